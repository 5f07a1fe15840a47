package sqfs

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by this package wrap one of these (or an
// io/fs error such as fs.ErrNotExist) and name the image and the structure
// involved, so callers can test with errors.Is and users can see what is wrong.
var (
	// ErrCorrupt reports an image whose structures are inconsistent, truncated
	// or out of bounds.
	ErrCorrupt = errors.New("corrupt squashfs image")
	// ErrUnsupported reports a valid-looking image using a feature this
	// package does not implement (an unknown compressor, a squashfs version
	// other than 4.0).
	ErrUnsupported = errors.New("unsupported squashfs feature")
	// ErrNoXattr reports a missing extended attribute.
	ErrNoXattr = errors.New("no such extended attribute")
)

// corruptError is the concrete error for ErrCorrupt and ErrUnsupported.
type formatError struct {
	image     string // file name of the image, or "squashfs image"
	structure string // e.g. "superblock", "inode table", "file /usr/bin/ls"
	detail    string
	kind      error // ErrCorrupt or ErrUnsupported
	cause     error // underlying error (e.g. from a decompressor or the io.ReaderAt), may be nil
}

func (e *formatError) Error() string {
	msg := e.image + ": " + e.structure + ": " + e.detail
	if e.cause != nil {
		msg += ": " + e.cause.Error()
	}
	return msg
}

func (e *formatError) Is(target error) bool { return target == e.kind }

func (e *formatError) Unwrap() error { return e.cause }

// corrupt builds an ErrCorrupt error naming the image and structure.
func (r *Reader) corrupt(structure, format string, args ...any) error {
	return &formatError{image: r.name, structure: structure, detail: fmt.Sprintf(format, args...), kind: ErrCorrupt}
}

// corruptCause is corrupt with an underlying cause.
func (r *Reader) corruptCause(structure string, cause error, format string, args ...any) error {
	var fe *formatError
	if errors.As(cause, &fe) {
		return cause // already names the image
	}
	return &formatError{image: r.name, structure: structure, detail: fmt.Sprintf(format, args...), kind: ErrCorrupt, cause: cause}
}

func (r *Reader) unsupported(structure, format string, args ...any) error {
	return &formatError{image: r.name, structure: structure, detail: fmt.Sprintf(format, args...), kind: ErrUnsupported}
}
