//go:build linux && (amd64 || arm64)

package objects

import (
	"encoding/binary"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/handle"
)

// TestTornTableSlotCopiesNoKey: readStripe (Range, Keys,
// Export) copies every entry's key with entryKey inside the read window.
// Inside the window, eachEntry resolves with peek, and the cap it walks
// is only bounded by what is left of the region, so a torn read of a
// stripe (the new table with the old, larger cap while a shrinking commit
// stores table then cap; or the old table with the new cap while one
// grows it) walks words past the table's block: other blocks of its size
// class, user Bytes among them. Such a word, taken for an entry handle,
// can name user data whose "meta" says a String key of megabytes, and
// entryKey copies that many bytes (up to 2 GiB: the rest of the region)
// before ReadEnd throws it away; keys are now at most MaxKeyLen, checked
// before the copy.
//
// The test builds the state a torn read meets (a table slot naming user
// bytes laid out as an entry) and runs readStripe on it.
func TestTornTableSlotCopiesNoKey(t *testing.T) {
	s := newSpace(t)
	// User bytes that look like an entry: hash, meta (a String key of 4
	// MiB, value None), val, 16 bytes into the blob block (after the
	// blob's length word and 8 bytes of payload).
	payload := make([]byte, 48)
	binary.LittleEndian.PutUint64(payload[16:], uint64(KindString)<<8|uint64(4<<20)<<32)
	require.NoError(t, s.Update(func(tx *Tx) error { return tx.Root().Set("blob", payload) }))
	require.NoError(t, s.Update(func(tx *Tx) error { return tx.Root().Set("k", 1) }))

	k := String("k")
	hash := Hash(k)
	var fake handle.Handle
	var slotWord *uint64
	require.NoError(t, s.View(func(tx *Tx) error {
		root := tx.Root()
		kb := String("blob")
		var fe found // the blob's handle, from its entry
		if err := root.lookupCommitted(kb, Hash(kb), &fe); err != nil {
			return err
		}
		ep, _, err := s.block(fe.ent)
		if err != nil {
			return err
		}
		b := handle.Handle(load(ep, offEntryVal))
		fake = handle.Make(b.Region(), b.Granule()+uint32(16/handle.Granule), b.Gen()) // payload[8:]

		var f found
		if err := root.lookupCommitted(k, hash, &f); err != nil {
			return err
		}
		st := stripeAt(root.p, stripeOf(hash))
		tp, _, err := s.block(handle.Handle(st.table.Load()))
		if err != nil {
			return err
		}
		slotWord = word(tp, uintptr(f.slot*8))
		return nil
	}))
	old := atomic.LoadUint64(slotWord)
	atomic.StoreUint64(slotWord, uint64(fake)) // what a torn walk past the table reads
	defer atomic.StoreUint64(slotWord, old)

	var longest int
	_ = s.View(func(tx *Tx) error {
		keys, _, _ := tx.Root().readStripe(stripeOf(hash), nil, nil)
		for _, key := range keys {
			longest = max(longest, len(key.s))
		}
		return nil
	})
	require.Less(t, longest, 1<<20, "a read window copied a key of %d bytes", longest)
}
