package xz

import (
	"errors"
	"fmt"
)

var (
	// ErrCorrupt is wrapped by every error about malformed input,
	// including output that would not fit into the destination buffer.
	ErrCorrupt = errors.New("xz: corrupt input")
	// ErrUnsupported is wrapped by errors about valid but unsupported
	// features: unknown filters, unknown check types, reserved flags.
	ErrUnsupported = errors.New("xz: unsupported feature")
)

// decodeError carries a descriptive message and the sentinel it wraps.
type decodeError struct {
	msg  string
	kind error
}

func (e *decodeError) Error() string { return "xz: " + e.msg }
func (e *decodeError) Unwrap() error { return e.kind }

func corruptf(format string, args ...any) error {
	return &decodeError{msg: fmt.Sprintf(format, args...), kind: ErrCorrupt}
}

func unsupportedf(format string, args ...any) error {
	return &decodeError{msg: fmt.Sprintf(format, args...), kind: ErrUnsupported}
}

func distErr(rep0 uint32, avail int) error {
	return corruptf("match distance %d beyond %d bytes of output", uint64(rep0)+1, avail)
}
