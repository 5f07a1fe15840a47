package sqfs

import (
	"encoding/binary"
)

const (
	xattrOOL      = 0x0100 // value stored out of line: the value is a reference
	xattrTypeMask = 0x00ff
	maxXattrValue = 65536 // Linux XATTR_SIZE_MAX
	// maxXattrTotal bounds the names and values of one inode together:
	// out-of-line values let a small table describe huge sets.
	maxXattrTotal   = 1 << 20
	xattrIDEntrySz  = 16
	xattrHeaderSize = 16
)

var xattrPrefixes = [...]string{"user.", "trusted.", "security."}

// Xattr is one extended attribute.
type Xattr struct {
	Name  string // full name with its prefix, e.g. "security.capability"
	Value []byte
}

// openXattrs reads the xattr id table header and lookup table.
func (r *Reader) openXattrs() error {
	const what = "xattr id table"
	if !r.sb.HasXattrs() {
		return nil
	}
	var h [xattrHeaderSize]byte
	if r.sb.XattrIDTable+xattrHeaderSize > r.sb.BytesUsed {
		return r.corrupt(what, "header at %d runs past the image end", r.sb.XattrIDTable)
	}
	if err := r.readFull(h[:], r.sb.XattrIDTable); err != nil {
		return r.corruptCause(what, err, "reading header")
	}
	r.xattrStart = binary.LittleEndian.Uint64(h[0:])
	r.xattrCount = binary.LittleEndian.Uint32(h[8:])
	if r.xattrStart < superblockSize || r.xattrStart >= r.sb.XattrIDTable {
		return r.corrupt(what, "key/value table start %d outside %d..%d", r.xattrStart, superblockSize, r.sb.XattrIDTable)
	}
	var err error
	r.xattrPtrs, err = r.lookupTable(r.sb.XattrIDTable+xattrHeaderSize, uint64(r.xattrCount), xattrIDEntrySz, what)
	return err
}

// Xattrs returns the extended attributes of an inode in stored order.
func (r *Reader) Xattrs(ino *Inode) ([]Xattr, error) {
	if ino.xattrIndex == noXattr {
		return nil, nil
	}
	const what = "xattr table"
	le := binary.LittleEndian
	var e [xattrIDEntrySz]byte
	if err := r.tableEntry(r.xattrPtrs, r.sb.XattrIDTable, uint64(ino.xattrIndex), e[:], "xattr id table"); err != nil {
		return nil, err
	}
	ref := le.Uint64(e[0:])
	count := le.Uint32(e[8:])
	c, err := r.xattrCursor(ref, what)
	if err != nil {
		return nil, err
	}
	defer c.close()
	var out []Xattr
	total := 0
	for i := uint32(0); i < count; i++ {
		var kh [4]byte
		if err := c.read(kh[:]); err != nil {
			return nil, err
		}
		typ := le.Uint16(kh[0:])
		nameLen := int(le.Uint16(kh[2:]))
		if int(typ&xattrTypeMask) >= len(xattrPrefixes) || typ&^(xattrTypeMask|xattrOOL) != 0 {
			return nil, c.errorf("xattr %d of inode %d has unknown type %#x", i, ino.Number, typ)
		}
		name := make([]byte, nameLen)
		if err := c.read(name); err != nil {
			return nil, err
		}
		value, err := r.xattrValue(c, typ&xattrOOL != 0, what)
		if err != nil {
			return nil, err
		}
		if total += len(name) + len(value); total > maxXattrTotal {
			return nil, c.errorf("xattrs of inode %d exceed %d bytes", ino.Number, maxXattrTotal)
		}
		out = append(out, Xattr{Name: xattrPrefixes[typ&xattrTypeMask] + string(name), Value: value})
	}
	return out, nil
}

func (r *Reader) xattrCursor(ref uint64, what string) (*metaCursor, error) {
	block, offset := ref>>16, int(ref&0xffff)
	if block >= r.sb.XattrIDTable-r.xattrStart || offset >= metaBlockSize {
		return nil, r.corrupt(what, "reference %#x out of range", ref)
	}
	return r.newCursor(r.xattrStart+block, offset, r.sb.XattrIDTable, what), nil
}

// xattrValue reads a value record (u32 size, bytes) at the cursor, following
// one out-of-line reference if ool is set.
func (r *Reader) xattrValue(c *metaCursor, ool bool, what string) ([]byte, error) {
	le := binary.LittleEndian
	var sz [4]byte
	if err := c.read(sz[:]); err != nil {
		return nil, err
	}
	n := le.Uint32(sz[:])
	if ool {
		if n != 8 {
			return nil, c.errorf("out-of-line xattr reference has size %d, want 8", n)
		}
		var rb [8]byte
		if err := c.read(rb[:]); err != nil {
			return nil, err
		}
		oc, err := r.xattrCursor(le.Uint64(rb[:]), what)
		if err != nil {
			return nil, err
		}
		defer oc.close()
		return r.xattrValue(oc, false, what)
	}
	if n > maxXattrValue {
		return nil, c.errorf("xattr value of %d bytes exceeds %d", n, maxXattrValue)
	}
	v := make([]byte, n)
	if err := c.read(v); err != nil {
		return nil, err
	}
	return v, nil
}

// Xattr returns the value of one extended attribute, or ErrNoXattr.
func (r *Reader) Xattr(ino *Inode, name string) ([]byte, error) {
	xs, err := r.Xattrs(ino)
	if err != nil {
		return nil, err
	}
	for _, x := range xs {
		if x.Name == name {
			return x.Value, nil
		}
	}
	return nil, ErrNoXattr
}
