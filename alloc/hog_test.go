package alloc

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/internal/proctest"
	"github.com/shmstore/shmstore/shm"
)

func init() { proctest.Register("hog", hogWorker) }

// hogWorker attaches, allocates superblock-sized blocks until the store is
// full (kept in its allocation log, so recovery frees them), says "ready"
// and waits to be killed.
func hogWorker() int {
	st, err := shm.Open("t", shm.Options{Dir: os.Getenv("SHMSTORE_TEST_DIR"), Create: shm.MustExist})
	if err != nil {
		return proctest.Fail(err)
	}
	a, err := New(st)
	if err != nil {
		return proctest.Fail(err)
	}
	h, err := a.Lease()
	if err != nil {
		return proctest.Fail(err)
	}
	for {
		if _, _, err := h.Alloc(SuperblockSize); err != nil {
			break
		}
	}
	fmt.Println("ready")
	time.Sleep(time.Hour)
	return 0
}

// killedHog starts a hog on the store in dir, waits until it holds all
// the free memory, and SIGKILLs it (by pid).
func killedHog(t *testing.T, dir string) {
	t.Helper()
	p := proctest.Start(t, "hog", proctest.Options{Env: []string{"SHMSTORE_TEST_DIR=" + dir}})
	require.Equal(t, "ready", p.Line())
	_, err := p.Kill()
	require.NoError(t, err)
}
