//go:build linux && (amd64 || arm64)

package abi

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/txn"
)

// Version is the ABI version, SHM_ABI_VERSION of shmstore.h.
const Version = 2

// Result codes (shmstore.h's SHM_OK ... SHM_ERR_OTHER): 0, a positive
// status, or a negative error.
const (
	OK      int32 = 0 // SHM_OK
	Again   int32 = 1 // SHM_AGAIN: restart and run the body again
	Timeout int32 = 2 // SHM_TIMEOUT: shm_tx_restart still waiting
	False   int32 = 3 // SHM_FALSE: a try-operation found nothing to do
	Short   int32 = 4 // SHM_SHORT: a one-shot call could not pass its value out

	ErrNotFound     int32 = -1   // SHM_ERR_NOT_FOUND
	ErrRange        int32 = -2   // SHM_ERR_RANGE
	ErrType         int32 = -3   // SHM_ERR_TYPE
	ErrConflict     int32 = -4   // SHM_ERR_CONFLICT
	ErrRetry        int32 = -5   // SHM_ERR_RETRY
	ErrTxClosed     int32 = -6   // SHM_ERR_TX_CLOSED
	ErrStale        int32 = -7   // SHM_ERR_STALE
	ErrNoMemory     int32 = -8   // SHM_ERR_NO_MEMORY
	ErrTooLarge     int32 = -9   // SHM_ERR_TOO_LARGE
	ErrReadOnly     int32 = -10  // SHM_ERR_READ_ONLY
	ErrNoStore      int32 = -11  // SHM_ERR_NO_STORE
	ErrExists       int32 = -12  // SHM_ERR_EXISTS
	ErrDamaged      int32 = -13  // SHM_ERR_DAMAGED
	ErrClosed       int32 = -14  // SHM_ERR_CLOSED
	ErrForked       int32 = -15  // SHM_ERR_FORKED
	ErrPermission   int32 = -16  // SHM_ERR_PERMISSION
	ErrBadArg       int32 = -17  // SHM_ERR_BAD_ARG
	ErrInUse        int32 = -18  // SHM_ERR_IN_USE
	ErrOverflow     int32 = -19  // SHM_ERR_OVERFLOW (a Counter add beyond int64; also the caller's own check)
	ErrRetryNothing int32 = -20  // SHM_ERR_RETRY_NOTHING
	ErrOther        int32 = -100 // SHM_ERR_OTHER
)

// Value kinds (SHM_NONE ... SHM_QUEUE): the store's Kind numbers, and
// KindQueue for a List made as a Queue.
const (
	KindNone    int32 = 0
	KindBool    int32 = 1
	KindInt     int32 = 2
	KindFloat   int32 = 3
	KindString  int32 = 4
	KindBytes   int32 = 5
	KindDict    int32 = 6
	KindList    int32 = 7
	KindRecord  int32 = 8
	KindCounter int32 = 9
	KindQueue   int32 = 10
)

// Open's create modes (SHM_OPEN_*) and shm_tx_begin's flags.
const (
	OpenCreate     int32 = 0 // SHM_OPEN_CREATE
	OpenMustExist  int32 = 1 // SHM_OPEN_MUST_EXIST
	OpenMustCreate int32 = 2 // SHM_OPEN_MUST_CREATE

	TxReadOnly int32 = 1 // shm_tx_begin flag: a read-only transaction
)

// Defined reports whether code is one of the codes above.
func Defined(code int32) bool {
	return code >= OK && code <= Short || code >= ErrRetryNothing && code <= ErrNotFound || code == ErrOther
}

// CodeName names a code as shmstore.h does ("SHM_ERR_TYPE").
func CodeName(code int32) string {
	if n, ok := codeNames[code]; ok {
		return n
	}
	return fmt.Sprintf("code %d", code)
}

var codeNames = map[int32]string{
	OK: "SHM_OK", Again: "SHM_AGAIN", Timeout: "SHM_TIMEOUT", False: "SHM_FALSE", Short: "SHM_SHORT",
	ErrNotFound: "SHM_ERR_NOT_FOUND", ErrRange: "SHM_ERR_RANGE", ErrType: "SHM_ERR_TYPE",
	ErrConflict: "SHM_ERR_CONFLICT", ErrRetry: "SHM_ERR_RETRY", ErrTxClosed: "SHM_ERR_TX_CLOSED",
	ErrStale: "SHM_ERR_STALE", ErrNoMemory: "SHM_ERR_NO_MEMORY", ErrTooLarge: "SHM_ERR_TOO_LARGE",
	ErrReadOnly: "SHM_ERR_READ_ONLY", ErrNoStore: "SHM_ERR_NO_STORE", ErrExists: "SHM_ERR_EXISTS",
	ErrDamaged: "SHM_ERR_DAMAGED", ErrClosed: "SHM_ERR_CLOSED", ErrForked: "SHM_ERR_FORKED",
	ErrPermission: "SHM_ERR_PERMISSION", ErrBadArg: "SHM_ERR_BAD_ARG", ErrInUse: "SHM_ERR_IN_USE",
	ErrOverflow: "SHM_ERR_OVERFLOW", ErrRetryNothing: "SHM_ERR_RETRY_NOTHING", ErrOther: "SHM_ERR_OTHER",
}

// MsgSize is the size of Error.Msg (shm_error.msg).
const MsgSize = 512

// Error is shm_error, byte for byte: the code of a failure and its
// message, NUL-terminated and truncated to fit. The caller owns it; the
// library writes it only when a call fails (returns a negative code).
type Error struct {
	Code int32
	Msg  [MsgSize]byte
}

// Message is the message as a Go string (up to its NUL).
func (e *Error) Message() string {
	for i, c := range e.Msg {
		if c == 0 {
			return string(e.Msg[:i])
		}
	}
	return string(e.Msg[:])
}

// set fills e (nil: nothing) with code and msg, cut at a UTF-8 boundary
// to leave room for the NUL.
func (e *Error) set(code int32, msg string) {
	if e == nil {
		return
	}
	e.Code = code
	if len(msg) > MsgSize-1 {
		n := MsgSize - 1
		for n > 0 && !utf8.RuneStart(msg[n]) {
			n--
		}
		msg = msg[:n]
	}
	n := copy(e.Msg[:MsgSize-1], msg)
	e.Msg[n] = 0
}

// codeError is a failure of this package's own, with its code.
type codeError struct {
	code int32
	msg  string
}

// Error is the message.
func (e *codeError) Error() string { return e.msg }

// failf makes a codeError.
func failf(code int32, format string, args ...any) error {
	return &codeError{code: code, msg: fmt.Sprintf(format, args...)}
}

// badArg is failf with ErrBadArg.
func badArg(format string, args ...any) error { return failf(ErrBadArg, "shmstore: "+format, args...) }

// status is a positive result (False, Timeout, Again, Short) that travels as an
// error through the call wrappers; it is no failure and fills no Error.
type status int32

// Error names the status.
func (s status) Error() string { return CodeName(int32(s)) }

// bodyError is what shm_tx_end hands Tx.End for a body that failed with
// a code other than a conflict or a retry.
type bodyError struct{ code int32 }

// Error says which code the body failed with.
func (e *bodyError) Error() string {
	return fmt.Sprintf("shmstore: the transaction's body failed with %s", CodeName(e.code))
}

// errBodyRetry marks the error shm_tx_end makes of a body's
// SHM_ERR_RETRY, to tell it from the error txn makes of a real Retry
// (see Lib.TxEnd).
var errBodyRetry = errors.New("the body retried")

// sentinels maps the root package's sentinel errors to codes, in the
// order they are tried (errors.Is).
var sentinels = []struct {
	err  error
	code int32
}{
	{shmstore.ErrForked, ErrForked},
	{shmstore.ErrClosed, ErrClosed},
	{shmstore.ErrConflict, ErrConflict},
	{shmstore.ErrRetryNothing, ErrRetryNothing},
	{shmstore.ErrRetry, ErrRetry},
	{shmstore.ErrTxClosed, ErrTxClosed},
	{txn.ErrDone, ErrTxClosed},
	{shmstore.ErrStaleHandle, ErrStale},
	{shmstore.ErrBadHandle, ErrStale},
	{shmstore.ErrOutOfMemory, ErrNoMemory},
	{shmstore.ErrTooLarge, ErrTooLarge},
	{shmstore.ErrReadOnly, ErrReadOnly},
	{shmstore.ErrKeyNotFound, ErrNotFound},
	{shmstore.ErrOutOfRange, ErrRange},
	{shmstore.ErrOverflow, ErrOverflow},
	{shmstore.ErrTypeMismatch, ErrType},
	{shmstore.ErrNotFound, ErrNoStore},
	{shmstore.ErrNotStore, ErrNoStore},
	{shmstore.ErrExists, ErrExists},
	{shmstore.ErrDamaged, ErrDamaged},
	{shmstore.ErrLayout, ErrDamaged},
	{shmstore.ErrCorrupt, ErrDamaged},
	{shmstore.ErrPermission, ErrPermission},
	{shmstore.ErrBadOption, ErrBadArg},
	{shmstore.ErrBadArgument, ErrBadArg},
	{shmstore.ErrInUse, ErrInUse},
	{context.DeadlineExceeded, Timeout},
	{context.Canceled, Timeout}, // a wait's slice ended (slices.go)
}

// Code is the result code for err: OK for nil, a status's own, a
// codeError's or bodyError's code, else the first root sentinel err
// wraps, else ErrOther.
func Code(err error) int32 {
	if err == nil {
		return OK
	}
	var s status
	if errors.As(err, &s) {
		return int32(s)
	}
	var ce *codeError
	if errors.As(err, &ce) {
		return ce.code
	}
	var be *bodyError
	if errors.As(err, &be) {
		return be.code
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return s.code
		}
	}
	return ErrOther
}

// result is the code for err, written into e (with err's message) when
// it is a failure.
func result(err error, e *Error) int32 {
	code := Code(err)
	if code < 0 {
		e.set(code, err.Error())
	}
	return code
}
