//go:build linux && (amd64 || arm64)

package objects

import (
	"sync/atomic"
	"unsafe"

	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/txn"
)

// header opens every container block (Dict, List, Record, Counter).
//
//	+-----------------------------+ 0
//	| lock      versioned lock    |  txn.LockWord: Dict: guards rc only
//	|                             |  (and, once unlinked, its entries for
//	|                             |  finalizers); others: rc and contents
//	+-----------------------------+ 8
//	| kind u8 | flags u8 | _ u16  |  immutable after creation (flags:
//	| n u32                       |  flagQueue on a List made as a Queue;
//	|                             |  n: a Record's field count, a Queue's
//	|                             |  bound)
//	+-----------------------------+ 16
//	| rc        u64               |  references from containers and the
//	|                             |  root; changed only at commit, under lock
//	+-----------------------------+ 24
//	| aux       u64               |  List: items block; Record: schema
//	|                             |  block; Counter: the value; Dict: 0
//	+-----------------------------+ 32
//
// Every word is read with atomic loads between txn.ReadBegin and
// ReadEnd, and written only by a committer holding lock (or by the
// creating transaction before the object is reachable).
type header struct {
	lock  txn.LockWord
	kind  uint8
	flags uint8
	_     uint16
	n     uint32
	rc    atomic.Uint64
	aux   atomic.Uint64
}

const headerSize = 32

// Byte offsets of header fields (for store addresses).
const (
	offLock = 0
	offRC   = 16
	offAux  = 24
)

// Stripes is the number of lock stripes of a Dict: inserts and deletes of
// keys in different stripes never conflict (overwrites of different keys
// never do: see the entry's lock below).
const Stripes = 64

// stripe is one lock stripe of a Dict, with its own open-addressing
// table: keys whose hash has these low bits live only here, so a stripe
// grows, and is locked, on its own.
//
//	+-----------------------------+ 0
//	| lock   versioned lock       |  guards the fields below, the table and
//	|                             |  which entries it links (not their values)
//	| table  handle               |  block of cap entry handles (0: empty,
//	|                             |  1: deleted), or Null before the first key
//	| count u32 | used u32        |  live keys | live + deleted slots
//	| cap    u64                  |  slots in table (a power of two)
//	+-----------------------------+ 32
type stripe struct {
	lock  txn.LockWord
	table atomic.Uint64
	sizes atomic.Uint64 // count | used<<32
	cap   atomic.Uint64
}

const (
	stripeSize   = 32
	offTable     = 8
	offSizes     = 16
	offCap       = 24
	dictSize     = headerSize + Stripes*stripeSize
	tombstone    = 1
	minTableCap  = 8
	stripeOffset = headerSize
)

// Entries of a Dict are blocks whose key never changes: a Set of a new key
// links a new entry (under the stripe's lock), a Set of an existing key
// stores the new value into the entry in place under the entry's own lock
// word, a Delete unlinks the entry (under the stripe's lock) and retires
// it, so a reader that found an entry through the table may read it until
// its transaction ends (reclaim keeps it).
//
// Two lock words vouch for a read of a key: the stripe's, for the table
// (which entry holds the key, or that none does), and the entry's, for
// its value. A reader checks both; a writer takes the one whose part it
// changes: an overwrite the entry's alone, so overwriters of different
// keys of one stripe neither conflict nor write a lock word in common
// (two entries packed next to each other may still share a cache line:
// see "The version clock" in txn/commit.go). A delete takes the
// stripe's: the entry's value does not change, and a concurrent
// overwriter of it, which read the table, fails its validation on the
// stripe (or the delete on the entry, which it read too).
//
//	+-----------------------------+ 0
//	| hash   u64                  |  immutable
//	| vkind u8 | kkind u8 | _ u16 |  vkind: under lock; the rest immutable
//	| klen u32                    |
//	| val    u64                  |  under lock: inline scalar, String/Bytes
//	|                             |  block handle, or container handle
//	| lock   versioned lock       |  txn.LockWord (0 when the entry is made)
//	| key    klen bytes           |  String/Bytes key; Int/Bool: 8 bytes
//	+-----------------------------+
const (
	entryHeader  = 32
	offEntryVal  = 16
	offEntryLock = 24
)

// entryLock is the lock word of the entry block at p.
func entryLock(p unsafe.Pointer) *txn.LockWord { return (*txn.LockWord)(unsafe.Add(p, offEntryLock)) }

// A String or Bytes value lives in a block of its own (immutable; owned
// by the one cell that holds it):
//
//	| len u64 | bytes |
const blobHeader = 8

// Cells hold a List's items and a Record's fields: 16 bytes each.
//
//	| kind u64 | val u64 |
const cellSize = 16

// List body, after the header (aux: items block of cap cells):
//
//	+-----------------------------+ 32
//	| head u32 | len u32          |  first item's position, item count
//	| cap    u64                  |  cells in the items block
//	+-----------------------------+ 48
const (
	offListMeta = 32
	offListCap  = 40
	listSize    = 48
	minListCap  = 8
)

// Record: the header (n: field count, aux: schema block), then n cells.
// The schema block (immutable, owned by the record):
//
//	| nfields u32 | classlen u32 | class bytes | (len u32, name bytes)... |
const offRecordCells = headerSize

// Retire kinds passed to reclaim (0 and 1 are reclaim's own).
const retireObject uint8 = 2

func hdrAt(p unsafe.Pointer) *header { return (*header)(p) }
func stripeAt(p unsafe.Pointer, i int) *stripe {
	return (*stripe)(unsafe.Add(p, stripeOffset+i*stripeSize))
}

func word(p unsafe.Pointer, off uintptr) *uint64 { return (*uint64)(unsafe.Add(p, off)) }

func load(p unsafe.Pointer, off uintptr) uint64 { return atomic.LoadUint64(word(p, off)) }

func addr(h handle.Handle, off uintptr) txn.Addr { return txn.AddrOf(h, off) }

// Compile-time pins of the shared layouts.
const (
	_ = uint(headerSize) - uint(unsafe.Sizeof(header{}))
	_ = uint(unsafe.Sizeof(header{})) - headerSize
	_ = uint(stripeSize) - uint(unsafe.Sizeof(stripe{}))
	_ = uint(unsafe.Sizeof(stripe{})) - stripeSize
)
