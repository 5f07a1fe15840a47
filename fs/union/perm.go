package union

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Permission checks in the server.
//
// The kernel's default_permissions checks every request against the
// attributes it has cached, and after each change to a directory (a
// create, an unlink) it must ask the server for them again before the next
// check: a second round trip for every entry that rm -rf or cp -a touches.
// A writable union that only its owner may use (no allow_other: the kernel
// lets in only processes whose user and group IDs all equal the mounter's)
// runs without it, and the handlers check here instead, as the kernel's
// generic_permission would: owner, group and other bits (POSIX ACLs are
// not consulted, as the kernel does not for FUSE without FUSE_POSIX_ACL),
// then the capabilities that override them, and the sticky bit (FUSE hides
// it from the VFS in this mode). What the VFS checks for itself, with or
// without default_permissions, is left to it: append-only and immutable
// files, CAP_MKNOD, O_NOATIME, the security.* and trusted.* xattr
// namespaces, protected hard links, and whether a regular file has an
// execute bit at all.
//
// The one difference: the kernel does not ask the server again about a
// name it has cached, so search permission on the directories of a cached
// path is not checked again. Among the processes of the one user, one that
// lacks a capability or supplementary group that another has could follow
// a path the other looked up. A change of a directory's mode or owner
// drops the kernel's cached names in it.

// Mask bits of a permission check, as the kernel's MAY_EXEC, MAY_WRITE and
// MAY_READ (and access(2)'s X_OK, W_OK, R_OK).
const (
	mayExec  = 1
	mayWrite = 2
	mayRead  = 4
)

// Capabilities that override file permissions.
const (
	capChown         = 0
	capDACOverride   = 1
	capDACReadSearch = 2
	capFowner        = 3
	capFsetid        = 4
)

// fmodeExec marks an open for execve in FUSE_OPEN's flags (the kernel's
// __FMODE_EXEC, passed through from the file's f_flags).
const fmodeExec = 0x20

// caller is the process a request came from: its fsuid and fsgid from the
// request, and its capabilities and supplementary groups from /proc, read
// only when the mode bits alone refuse (root owning what it works on, the
// common case, never reads them).
type caller struct {
	uid, gid uint32
	pid      uint32
	loaded   bool
	caps     uint64
	groups   []uint32
}

// callerOf returns the request's caller, or nil where the kernel checks
// permissions itself (or the request carries no caller).
func (u *Union) callerOf(ctx context.Context) *caller {
	if !u.checkPerms.Load() {
		return nil
	}
	return callerFrom(ctx)
}

// callerFrom returns the request's caller, nil if it carries none.
func callerFrom(ctx context.Context) *caller {
	c, ok := fuse.FromContext(ctx)
	if !ok {
		return nil
	}
	return &caller{uid: c.Uid, gid: c.Gid, pid: c.Pid}
}

// load reads the caller's effective capabilities and supplementary groups.
// A process that is gone (or a request from the kernel, pid 0) has none.
func (c *caller) load() {
	if c.loaded {
		return
	}
	c.loaded = true
	if c.pid == 0 {
		return
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.pid))
	if err != nil {
		return
	}
	for line := range bytes.Lines(status) {
		key, val, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch string(key) {
		case "CapEff":
			c.caps, _ = strconv.ParseUint(string(bytes.TrimSpace(val)), 16, 64)
		case "Groups":
			for _, f := range bytes.Fields(val) {
				if g, err := strconv.ParseUint(string(f), 10, 32); err == nil {
					c.groups = append(c.groups, uint32(g))
				}
			}
		}
	}
}

func (c *caller) capable(bit uint) bool {
	c.load()
	return c.caps&(1<<bit) != 0
}

// inGroup reports whether gid is the caller's group or one of its
// supplementary groups.
func (c *caller) inGroup(gid uint32) bool {
	if gid == c.gid {
		return true
	}
	c.load()
	for _, g := range c.groups {
		if g == gid {
			return true
		}
	}
	return false
}

// owns reports whether the caller owns a or may act as its owner
// (CAP_FOWNER): the kernel's inode_owner_or_capable.
func (c *caller) owns(a *Attr) bool {
	return c.uid == a.UID || c.capable(capFowner)
}

// may checks mask (mayRead|mayWrite|mayExec) against a, as the kernel's
// generic_permission does without ACLs.
func (c *caller) may(a *Attr, mask uint32) syscall.Errno {
	mode := a.Mode
	switch {
	case c.uid == a.UID:
		mode >>= 6
	case mask&(mode^mode>>3) != 0 && c.inGroup(a.GID): // the group's bits differ from other's where it matters
		mode >>= 3
	}
	if mask&^mode&7 == 0 {
		return 0
	}
	if a.IsDir() {
		if mask&mayWrite == 0 && c.capable(capDACReadSearch) {
			return 0
		}
		if c.capable(capDACOverride) {
			return 0
		}
		return syscall.EACCES
	}
	if mask == mayRead && c.capable(capDACReadSearch) {
		return 0
	}
	if (mask&mayExec == 0 || a.Mode&0o111 != 0) && c.capable(capDACOverride) {
		return 0
	}
	return syscall.EACCES
}

// checked returns the request's caller and n's attributes for a
// permission check; a nil caller (with the errno of a failed stat, or 0)
// where there is nothing to check.
func (n *node) checked(ctx context.Context) (*caller, *Attr, syscall.Errno) {
	c := n.u.callerOf(ctx)
	if c == nil {
		return nil, nil, 0
	}
	a, err := n.permAttr()
	if err != nil {
		return nil, nil, toErrno(err)
	}
	return c, a, 0
}

// permit checks mask against n's attributes for the request's caller.
func (n *node) permit(ctx context.Context, mask uint32) syscall.Errno {
	c, a, errno := n.checked(ctx)
	if c == nil {
		return errno
	}
	return c.may(a, mask)
}

// permitOpen checks an open's access mode (and O_TRUNC, and an open for
// execve) against n.
func (n *node) permitOpen(ctx context.Context, flags uint32) syscall.Errno {
	var mask uint32
	switch flags & syscall.O_ACCMODE {
	case syscall.O_RDONLY:
		mask = mayRead
	case syscall.O_WRONLY:
		mask = mayWrite
	default:
		mask = mayRead | mayWrite
	}
	if flags&syscall.O_TRUNC != 0 {
		mask |= mayWrite
	}
	if flags&fmodeExec != 0 {
		mask |= mayExec
	}
	return n.permit(ctx, mask)
}

// permAttr returns the attributes that permission checks read: a bundle's
// cannot change, and the changes layer's change only through the
// handlers, which drop the copy kept here (forgetPermAttr).
func (n *node) permAttr() (*Attr, error) {
	if a := n.perm.Load(); a != nil {
		return a, nil
	}
	a, err := n.attr()
	if err != nil {
		return nil, err
	}
	n.perm.Store(a)
	return a, nil
}

// forgetPermAttr drops the attributes permAttr keeps, after a change to
// them (or to the layer they come from).
func (n *node) forgetPermAttr() { n.perm.Store(nil) }

// permitSetattr checks a SETATTR as the kernel's setattr_prepare and
// may_setattr would, and clears the setgid bit from a mode that the caller
// may not give it. in is changed for that.
func (n *node) permitSetattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn) syscall.Errno {
	c, a, errno := n.checked(ctx)
	if c == nil {
		return errno
	}
	newGID := a.GID
	if uid, ok := in.GetUID(); ok && !(c.uid == a.UID && uid == a.UID) && !c.capable(capChown) {
		return syscall.EPERM
	}
	if gid, ok := in.GetGID(); ok {
		if !(c.uid == a.UID && (gid == a.GID || c.inGroup(gid))) && !c.capable(capChown) {
			return syscall.EPERM
		}
		newGID = gid
	}
	if mode, ok := in.GetMode(); ok {
		// The kernel clears setuid and setgid bits itself after a write or
		// a chown by anyone (file_remove_privs); what it sends then only
		// takes bits away.
		const setid = syscall.S_ISUID | syscall.S_ISGID
		added, dropped := (mode&^a.Mode)&0o7777, (a.Mode&^mode)&0o7777
		if chmod := added != 0 || dropped&^setid != 0; chmod {
			if !c.owns(a) {
				return syscall.EPERM
			}
			if mode&syscall.S_ISGID != 0 && !c.inGroup(newGID) && !c.capable(capFsetid) {
				in.Mode &^= syscall.S_ISGID
			}
		}
	}
	if in.Valid&(fuse.FATTR_ATIME|fuse.FATTR_MTIME) != 0 {
		explicit := in.Valid&fuse.FATTR_ATIME != 0 && in.Valid&fuse.FATTR_ATIME_NOW == 0 ||
			in.Valid&fuse.FATTR_MTIME != 0 && in.Valid&fuse.FATTR_MTIME_NOW == 0
		switch {
		case c.owns(a):
		case explicit:
			return syscall.EPERM
		default: // set to now: writing would do that too
			if errno := c.may(a, mayWrite); errno != 0 {
				return errno
			}
		}
	}
	if _, ok := in.GetSize(); ok {
		if h, ok := f.(*handle); !ok || !h.writable {
			if errno := c.may(a, mayWrite); errno != 0 {
				return errno
			}
		}
	}
	return 0
}

// permitXattr checks a get, set or removal of the extended attribute
// name: user.* attributes need read or write permission (and in a sticky
// directory, ownership, which the VFS would check if it saw the bit), and
// POSIX ACLs may be set only by the owner. The VFS checks the other
// namespaces.
func (n *node) permitXattr(ctx context.Context, name string, mask uint32) syscall.Errno {
	user := strings.HasPrefix(name, "user.")
	acl := mask == mayWrite && (name == aclAccess || name == aclDefault)
	if !user && !acl {
		return 0 // without a stat: the kernel asks for security.capability before each write
	}
	c, a, errno := n.checked(ctx)
	if c == nil {
		return errno
	}
	if acl {
		if !c.owns(a) {
			return syscall.EPERM
		}
		return 0
	}
	if mask == mayWrite && a.IsDir() && a.Mode&syscall.S_ISVTX != 0 && !c.owns(a) {
		return syscall.EPERM
	}
	return c.may(a, mask)
}

// dropCachedNames makes the kernel forget the names it has cached in
// directory n after a change to its mode, owner or ACL that may have taken
// search permission away from someone: the kernel would otherwise follow
// them without asking, and search permission on n is checked here, not by
// the kernel. before is what decided that permission until the change
// (searchers), or nil if unknown. It runs after the reply: the kernel holds
// the directory's lock until then, and the invalidation takes it.
func (n *node) dropCachedNames(before *searchers) {
	if !n.u.checkPerms.Load() || !n.IsDir() {
		return
	}
	if before != nil {
		if a, err := n.attr(); err == nil && !before.narrowedBy(a) {
			return // cp -a sets each directory's owner and mode after filling it
		}
	}
	go func() {
		for name := range n.Children() {
			n.NotifyEntry(name)
		}
	}()
}

// searchers is what decides who may search a directory without an
// extended ACL: its owner, its group and the execute bits of its mode.
type searchers struct{ uid, gid, exec uint32 }

// searchersOf returns directory n's searchers before a change, nil where
// they are unknown (dropCachedNames then drops the names in any case) or
// not needed. They come from the attributes the change's permission check
// has just read (permAttr).
func (n *node) searchersOf() *searchers {
	if !n.u.checkPerms.Load() || !n.IsDir() {
		return nil
	}
	a, err := n.permAttr()
	if err != nil {
		return nil
	}
	return &searchers{uid: a.UID, gid: a.GID, exec: a.Mode & 0o111}
}

// narrowedBy reports whether a directory that now has attributes a may be
// searched by fewer callers than s allowed: a caller's class (owner,
// group, others) is unchanged while owner and group are, and within it
// only a cleared execute bit refuses (an ACL's mask is the group bits).
func (s *searchers) narrowedBy(a *Attr) bool {
	return a.UID != s.uid || a.GID != s.gid || s.exec&^(a.Mode&0o111) != 0
}

// aclSearchers is searchersOf before value is set as directory n's
// system.posix_acl_access: nil (the names are dropped) unless both the
// ACL n has and the new one are only the owner, group and other entries
// that its mode holds, since named entries decide for callers the mode
// does not show.
func (n *node) aclSearchers(value []byte) *searchers {
	if _, ok := minimalACL(value); !ok {
		return nil
	}
	s := n.searchersOf()
	if s == nil {
		return nil
	}
	t := n.top()
	if v, err := t.b.layer.GetXattr(t.e, aclAccess); !errors.Is(err, ErrNoXattr) {
		if _, ok := minimalACL(v); !ok {
			return nil
		}
	}
	return s
}

// The names of a file's POSIX ACL and a directory's default ACL.
const (
	aclAccess  = "system.posix_acl_access"
	aclDefault = "system.posix_acl_default"
)

// ACL entry tags (of the owner, the group and others) and the place of
// their permissions in a mode.
var aclModeShift = map[uint16]uint{0x01: 6, 0x04: 3, 0x20: 0}

// minimalACL reports whether v, a system.posix_acl_access value (version
// 2, then entries of tag, permissions and ID in 8 bytes each), holds the
// owner, group and other entries alone: what a mode says in full. mode is
// that mode's permission bits.
func minimalACL(v []byte) (mode uint32, ok bool) {
	if len(v) != 4+3*8 || binary.LittleEndian.Uint32(v) != 2 {
		return 0, false
	}
	var seen uint32
	for e := v[4:]; len(e) > 0; e = e[8:] {
		tag, perm := binary.LittleEndian.Uint16(e), uint32(binary.LittleEndian.Uint16(e[2:]))
		shift, known := aclModeShift[tag]
		if !known || seen&(7<<shift) != 0 || perm > 7 {
			return 0, false
		}
		seen |= 7 << shift
		mode |= perm << shift
	}
	return mode, true
}

// aclKeepsMode reports whether setting v as n's access ACL leaves n's mode
// as it is: v is minimal and has the mode's permissions, and n has no
// setgid bit (which the change may clear).
func (n *node) aclKeepsMode(v []byte) bool {
	mode, ok := minimalACL(v)
	if !ok {
		return false
	}
	a, err := n.permAttr()
	return err == nil && a.Mode&syscall.S_ISGID == 0 && mode == a.Mode&0o777
}

// permitRename checks that the caller may change both directories of a
// rename (n, the source's, and np, the target's).
func (n *node) permitRename(ctx context.Context, np *node) syscall.Errno {
	if errno := n.permit(ctx, mayWrite|mayExec); errno != 0 {
		return errno
	}
	if np == n {
		return 0
	}
	return np.permit(ctx, mayWrite|mayExec)
}

// permitLeaving checks that the caller may rename an entry of n (with
// attributes a) into np: take it out of a sticky directory (permitSticky),
// and, for a directory that changes parents, rewrite its "..", which takes
// write permission on it (the kernel's vfs_rename).
func (n *node) permitLeaving(ctx context.Context, np *node, a *Attr) syscall.Errno {
	if errno := n.permitSticky(ctx, a); errno != 0 {
		return errno
	}
	c := n.u.callerOf(ctx)
	if c == nil || np == n || !a.IsDir() {
		return 0
	}
	return c.may(a, mayWrite)
}

// permitSticky refuses to remove or replace an entry of directory n (with
// attributes a) in a sticky directory unless the caller owns the entry or
// the directory, or has CAP_FOWNER: the kernel's check_sticky, which it
// leaves to the server where it does not check permissions (FUSE hides the
// sticky bit from the VFS then).
func (n *node) permitSticky(ctx context.Context, a *Attr) syscall.Errno {
	c, d, errno := n.checked(ctx)
	if c == nil {
		return errno
	}
	if d.Mode&syscall.S_ISVTX == 0 || c.uid == a.UID || c.uid == d.UID || c.capable(capFowner) {
		return 0
	}
	return syscall.EPERM
}

// entryAttr returns the attributes of name in directory n, whose layers
// are refs: its node's where the kernel knows one (refs kept there may
// predate a chown).
func (n *node) entryAttr(name string, refs []layerRef) *Attr {
	if cn := n.childNode(name); cn != nil {
		if a, err := cn.permAttr(); err == nil {
			return a
		}
	}
	return refs[0].e.Attr()
}
