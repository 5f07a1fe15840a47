// Package xattrat reads and writes the extended attributes of a path
// relative to a directory descriptor, never following a final symlink: with
// the *xattrat system calls of Linux 6.13, and through /proc/self/fd on
// older kernels. The /proc path costs a walk through procfs on every call,
// three times the time of the call itself.
package xattrat

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// unsupported is set once the kernel has answered ENOSYS.
var unsupported atomic.Bool

// xattrArgs is struct xattr_args: the value buffer goes by address inside
// it, so the buffer is pinned (and thereby on the heap: a goroutine stack
// may move while the address waits in an integer).
type xattrArgs struct {
	value uint64
	size  uint32
	flags uint32
}

func procPath(dirfd int, path string) string { return fmt.Sprintf("/proc/self/fd/%d/%s", dirfd, path) }

// at runs *xattrat system call num on dirfd and path with the other
// arguments, and reports false where the kernel has no such call.
func at(num uintptr, dirfd int, path, name string, a4 unsafe.Pointer, a5 uintptr) (int, bool, error) {
	if unsupported.Load() {
		return 0, false, nil
	}
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return 0, true, err
	}
	var n *byte
	if name != "" {
		if n, err = unix.BytePtrFromString(name); err != nil {
			return 0, true, err
		}
	}
	var r uintptr
	var errno unix.Errno
	if num == unix.SYS_LISTXATTRAT {
		r, _, errno = unix.Syscall6(num, uintptr(dirfd), uintptr(unsafe.Pointer(p)), unix.AT_SYMLINK_NOFOLLOW, uintptr(a4), a5, 0)
	} else {
		r, _, errno = unix.Syscall6(num, uintptr(dirfd), uintptr(unsafe.Pointer(p)), unix.AT_SYMLINK_NOFOLLOW, uintptr(unsafe.Pointer(n)), uintptr(a4), a5)
	}
	switch errno {
	case 0:
		return int(r), true, nil
	case unix.ENOSYS:
		unsupported.Store(true)
		return 0, false, nil
	}
	return 0, true, errno
}

// args makes the xattr_args of buf, pinned by pin.
func args(pin *runtime.Pinner, buf []byte, flags int) *xattrArgs {
	a := &xattrArgs{size: uint32(len(buf)), flags: uint32(flags)}
	if len(buf) > 0 {
		pin.Pin(&buf[0])
		a.value = uint64(uintptr(unsafe.Pointer(&buf[0])))
	}
	return a
}

// Get reads attribute name of path into dest (empty: only its size) and
// returns its size.
func Get(dirfd int, path, name string, dest []byte) (int, error) {
	var pin runtime.Pinner
	defer pin.Unpin()
	a := args(&pin, dest, 0)
	size, ok, err := at(unix.SYS_GETXATTRAT, dirfd, path, name, unsafe.Pointer(a), unsafe.Sizeof(*a))
	if ok {
		return size, err
	}
	return unix.Lgetxattr(procPath(dirfd, path), name, dest)
}

// List reads the names of path's attributes into dest (empty: only their
// size) and returns their size.
func List(dirfd int, path string, dest []byte) (int, error) {
	var list unsafe.Pointer
	if len(dest) > 0 {
		list = unsafe.Pointer(&dest[0])
	}
	size, ok, err := at(unix.SYS_LISTXATTRAT, dirfd, path, "", list, uintptr(len(dest)))
	if ok {
		return size, err
	}
	return unix.Llistxattr(procPath(dirfd, path), dest)
}

// Set sets attribute name of path to value; flags as for setxattr(2).
func Set(dirfd int, path, name string, value []byte, flags int) error {
	var pin runtime.Pinner
	defer pin.Unpin()
	a := args(&pin, value, flags)
	_, ok, err := at(unix.SYS_SETXATTRAT, dirfd, path, name, unsafe.Pointer(a), unsafe.Sizeof(*a))
	if ok {
		return err
	}
	return unix.Lsetxattr(procPath(dirfd, path), name, value, flags)
}

// Remove removes attribute name of path.
func Remove(dirfd int, path, name string) error {
	_, ok, err := at(unix.SYS_REMOVEXATTRAT, dirfd, path, name, nil, 0)
	if ok {
		return err
	}
	return unix.Lremovexattr(procPath(dirfd, path), name)
}
