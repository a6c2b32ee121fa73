//go:build linux && (amd64 || arm64)

package objects

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/shmstore/shmstore/handle"
)

// Record is a shared object with a class name and a fixed list of named
// fields, like a struct or a Python dataclass. Methods live in programs,
// never in shared memory. Fields start as None.
type Record struct {
	tx     *Tx
	h      handle.Handle
	p      unsafe.Pointer
	class  string
	fields []string
}

type recOverlay struct {
	r    *Record
	sets map[int]Value
}

// NewRecord makes a Record of class with the given fields, all None
// (alive once linked).
func (tx *Tx) NewRecord(class string, fields []string) (*Record, error) {
	seen := map[string]bool{}
	size := 8 + len(class)
	for _, f := range fields {
		if f == "" || seen[f] {
			return nil, fmt.Errorf("objects: record %s: field %q empty or repeated: %w", class, f, ErrTypeMismatch)
		}
		seen[f] = true
		size += 4 + len(f)
	}
	if class == "" || len(fields) > 1<<16 {
		return nil, fmt.Errorf("objects: record needs a class name and at most 65536 fields: %w", ErrTypeMismatch)
	}
	h, p, err := tx.newObject(KindRecord, headerSize+len(fields)*cellSize)
	if err != nil {
		return nil, err
	}
	sh, b, err := tx.t.Alloc(size)
	if err != nil {
		return nil, err
	}
	binary.LittleEndian.PutUint32(b, uint32(len(fields)))
	binary.LittleEndian.PutUint32(b[4:], uint32(len(class)))
	off := 8 + copy(b[8:], class)
	for _, f := range fields {
		binary.LittleEndian.PutUint32(b[off:], uint32(len(f)))
		off += 4 + copy(b[off+4:], f)
	}
	hd := hdrAt(p)
	hd.n = uint32(len(fields))
	hd.aux.Store(uint64(sh))
	return &Record{tx: tx, h: h, p: p, class: class, fields: append([]string(nil), fields...)}, nil
}

func (tx *Tx) recordAt(h handle.Handle) (*Record, error) {
	p, err := tx.s.object(h, KindRecord)
	if err != nil {
		return nil, tx.doom(fmt.Errorf("objects: record %v: %w", h, err))
	}
	class, fields, err := tx.s.schema(h, p)
	if err != nil {
		return nil, err
	}
	return &Record{tx: tx, h: h, p: p, class: class, fields: fields}, nil
}

// schema reads a Record's immutable schema block.
func (s *Space) schema(h handle.Handle, p unsafe.Pointer) (string, []string, error) {
	sp, n, err := s.block(handle.Handle(load(p, offAux)))
	if err != nil {
		return "", nil, fmt.Errorf("objects: record %v schema: %w", h, err)
	}
	b := unsafe.Slice((*byte)(sp), n)
	bad := fmt.Errorf("objects: record %v schema: %w", h, ErrCorrupt)
	nf, cl := int(binary.LittleEndian.Uint32(b)), int(binary.LittleEndian.Uint32(b[4:]))
	if nf != int(hdrAt(p).n) || 8+cl > n {
		return "", nil, bad
	}
	class, off := string(b[8:8+cl]), 8+cl
	fields := make([]string, nf)
	for i := range fields {
		if off+4 > n {
			return "", nil, bad
		}
		l := int(binary.LittleEndian.Uint32(b[off:]))
		if off+4+l > n {
			return "", nil, bad
		}
		fields[i], off = string(b[off+4:off+4+l]), off+4+l
	}
	return class, fields, nil
}

// Handle is the Record's handle.
func (r *Record) Handle() handle.Handle { return r.h }

// Value is the Record as a value.
func (r *Record) Value() Value { return Value{kind: KindRecord, n: uint64(r.h)} }

// Class is the Record's class name.
func (r *Record) Class() string { return r.class }

// Fields are the Record's field names, in order.
func (r *Record) Fields() []string { return append([]string(nil), r.fields...) }

func (r *Record) field(name string) (int, error) {
	for i, f := range r.fields {
		if f == name {
			return i, nil
		}
	}
	return 0, fmt.Errorf("objects: %s has no field %q: %w", r.class, name, ErrNotFound)
}

// Get returns a field's value.
func (r *Record) Get(name string) (Value, error) {
	i, err := r.field(name)
	if err != nil {
		return None, err
	}
	if o, ok := r.tx.recs[r.h]; ok {
		if v, ok := o.sets[i]; ok {
			return v, nil
		}
	}
	tx := r.tx
	hd := hdrAt(r.p)
	a := addr(r.h, offLock)
	off := uintptr(offRecordCells + i*cellSize)
	for {
		w, err := tx.t.ReadBegin(&hd.lock, a)
		if err != nil {
			return None, err
		}
		k, x := load(r.p, off), load(r.p, off+8)
		if tx.t.ReadEnd(&hd.lock, a, w) {
			v, err := tx.s.decode(k, x)
			if err == nil {
				err = tx.s.fill(&v)
			}
			return v, tx.doom(err)
		}
	}
}

// Set sets a field (val as for Dict.Set).
func (r *Record) Set(name string, val any) error {
	i, err := r.field(name)
	if err != nil {
		return err
	}
	tx := r.tx
	v, err := tx.valueOf(val)
	if err != nil {
		return err
	}
	old, err := r.Get(name)
	if err != nil {
		return err
	}
	if err := tx.write(); err != nil {
		return err
	}
	o, ok := tx.recs[r.h]
	if !ok {
		if err := tx.lockObject(r.h, r.p, false); err != nil {
			return err
		}
		if tx.recs == nil {
			tx.recs = map[handle.Handle]*recOverlay{}
		}
		o = &recOverlay{r: r, sets: map[int]Value{}}
		tx.recs[r.h] = o
		tx.recList = append(tx.recList, o)
	}
	if err := tx.refSwap(old, true, v, true); err != nil {
		return err
	}
	o.sets[i] = v
	return nil
}

func (o *recOverlay) prepare(tx *Tx) error {
	r := o.r
	private := tx.created[r.h]
	for i, v := range o.sets {
		off := uintptr(offRecordCells + i*cellSize)
		tx.retireValue(load(r.p, off), load(r.p, off+8))
		k, w, err := tx.encode(v)
		if err != nil {
			return err
		}
		if err := tx.storeWord(private, r.h, r.p, off, k); err != nil {
			return err
		}
		if err := tx.storeWord(private, r.h, r.p, off+8, w); err != nil {
			return err
		}
	}
	return nil
}

// GetRecord returns the Record under key (ErrNotFound, ErrTypeMismatch).
func (d *Dict) GetRecord(key any) (*Record, error) {
	v, err := d.Get(key)
	if err != nil {
		return nil, err
	}
	if v.kind != KindRecord {
		return nil, AtKey(key, mismatch(v, KindRecord))
	}
	return d.tx.recordAt(v.hd())
}
