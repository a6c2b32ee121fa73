package alloc

// The helpers of the package's tests, for its external tests (package
// alloc_test: those that drive the allocator through internal/churn, which
// imports alloc).
var (
	OpenTest     = openTest
	LeaseTest    = lease
	RequireClean = requireClean
)
