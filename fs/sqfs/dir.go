package sqfs

import (
	"encoding/binary"
	"io/fs"
	"strings"
)

const (
	maxDirHeaderCount = 256 // entries per directory header
	maxNameLen        = 256
)

// DirEntry is one entry of a directory listing.
type DirEntry struct {
	Name        string
	Type        InodeType
	InodeRef    uint64
	InodeNumber uint32
}

// dirScanner walks a directory listing header by header.
type dirScanner struct {
	r       *Reader
	dir     *Inode
	c       *metaCursor
	left    uint64 // listing bytes not yet consumed
	inHdr   int    // entries left under the current header
	start   uint32 // inode metadata block of the current header
	baseIno uint32
	buf     [maxNameLen + 8]byte
}

func (r *Reader) listingWhat(dir *Inode) string {
	return "directory listing of inode " + itoa(uint64(dir.Number))
}

// newDirScanner starts reading dir's listing at byte pos of the listing,
// which lives at the given absolute metadata block and offset.
func (r *Reader) newDirScanner(dir *Inode, block uint64, offset int, pos uint64) *dirScanner {
	return &dirScanner{
		r:    r,
		dir:  dir,
		c:    r.newCursor(block, offset, r.dirEnd, r.listingWhat(dir)),
		left: uint64(dir.listSize) - pos,
	}
}

// next returns the next entry, or ok=false at the end of the listing.
func (s *dirScanner) next() (e DirEntry, ok bool, err error) {
	le := binary.LittleEndian
	if s.inHdr == 0 {
		// A listing may end with padding shorter than a header (the kernel
		// stops at fewer than 12 remaining bytes too).
		if s.left < 12 {
			return e, false, nil
		}
		var h [12]byte
		if err := s.c.read(h[:]); err != nil {
			return e, false, err
		}
		s.left -= 12
		count := uint64(le.Uint32(h[0:])) + 1 // as uint32, 0xffffffff + 1 wraps to 0
		if count > maxDirHeaderCount {
			return e, false, s.c.errorf("directory header count %d exceeds %d", count, maxDirHeaderCount)
		}
		s.inHdr = int(count)
		s.start = le.Uint32(h[4:])
		s.baseIno = le.Uint32(h[8:])
		if uint64(s.start) >= s.r.sb.DirectoryTable-s.r.sb.InodeTable {
			return e, false, s.c.errorf("directory header points to inode block %d outside the inode table", s.start)
		}
	}
	if s.left < 8 {
		return e, false, s.c.errorf("listing ends inside an entry")
	}
	h := s.buf[:8]
	if err := s.c.read(h); err != nil {
		return e, false, err
	}
	s.left -= 8
	offset := le.Uint16(h[0:])
	delta := int16(le.Uint16(h[2:]))
	typ := le.Uint16(h[4:])
	nameLen := uint64(le.Uint16(h[6:])) + 1
	if nameLen > maxNameLen || nameLen > s.left {
		return e, false, s.c.errorf("entry name length %d (limit %d, %d bytes left)", nameLen, maxNameLen, s.left)
	}
	name := s.buf[:nameLen]
	if err := s.c.read(name); err != nil {
		return e, false, err
	}
	s.left -= nameLen
	s.inHdr--
	if typ < 1 || typ > 7 {
		return e, false, s.c.errorf("entry %q has type %d", name, typ)
	}
	if offset >= metaBlockSize {
		return e, false, s.c.errorf("entry %q has inode offset %d", name, offset)
	}
	num := int64(s.baseIno) + int64(delta)
	if num < 1 || num > int64(s.r.sb.InodeCount) {
		return e, false, s.c.errorf("entry %q has inode number %d outside 1..%d", name, num, s.r.sb.InodeCount)
	}
	if !validName(name) {
		return e, false, s.c.errorf("entry name %q is not a valid file name", name)
	}
	return DirEntry{
		Name:        string(name),
		Type:        InodeType(typ),
		InodeRef:    uint64(s.start)<<16 | uint64(offset),
		InodeNumber: uint32(num),
	}, true, nil
}

func validName(b []byte) bool {
	s := string(b)
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00")
}

// ReadDirInode returns the entries of a directory inode in listing order
// (sorted by name, as mksquashfs writes them).
func (r *Reader) ReadDirInode(dir *Inode) ([]DirEntry, error) {
	if dir.Type != TypeDir {
		return nil, &fs.PathError{Op: "readdir", Path: r.name, Err: errNotDir}
	}
	s := r.newDirScanner(dir, r.sb.DirectoryTable+uint64(dir.dirBlock), int(dir.dirOffset), 0)
	defer s.c.close()
	var out []DirEntry
	for {
		e, ok, err := s.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return out, nil
		}
		out = append(out, e)
	}
}

// LookupEntry finds name in directory dir, using the directory index of
// extended directories to skip to the right metadata block.
func (r *Reader) LookupEntry(dir *Inode, name string) (DirEntry, error) {
	if dir.Type != TypeDir {
		return DirEntry{}, errNotDir
	}
	block := r.sb.DirectoryTable + uint64(dir.dirBlock)
	offset := int(dir.dirOffset)
	var pos uint64
	if dir.indexCount > 0 {
		var err error
		if block, offset, pos, err = r.seekIndex(dir, name); err != nil {
			return DirEntry{}, err
		}
	}
	s := r.newDirScanner(dir, block, offset, pos)
	defer s.c.close()
	for {
		e, ok, err := s.next()
		if err != nil {
			return DirEntry{}, err
		}
		if !ok {
			return DirEntry{}, fs.ErrNotExist
		}
		switch c := strings.Compare(e.Name, name); {
		case c == 0:
			return e, nil
		case c > 0:
			// Listings are sorted: name is not here.
			return DirEntry{}, fs.ErrNotExist
		}
	}
}

// Lookup returns the inode called name in directory dir.
func (r *Reader) Lookup(dir *Inode, name string) (*Inode, error) {
	e, err := r.LookupEntry(dir, name)
	if err != nil {
		return nil, err
	}
	return r.entryInode(e)
}

// EntryInode reads the inode a directory entry points to and checks that
// the two agree.
func (r *Reader) EntryInode(e DirEntry) (*Inode, error) { return r.entryInode(e) }

func (r *Reader) entryInode(e DirEntry) (*Inode, error) {
	ino, err := r.Inode(e.InodeRef)
	if err != nil {
		return nil, err
	}
	if ino.Type != e.Type || ino.Number != e.InodeNumber {
		return nil, r.corrupt("directory entry "+e.Name, "entry says %s inode %d, inode is %s %d", e.Type, e.InodeNumber, ino.Type, ino.Number)
	}
	return ino, nil
}

// seekIndex reads the index of an extended directory and returns where the
// scan for name should begin: the last indexed header whose first name is
// not after name.
func (r *Reader) seekIndex(dir *Inode, name string) (block uint64, offset int, pos uint64, err error) {
	le := binary.LittleEndian
	block = r.sb.DirectoryTable + uint64(dir.dirBlock)
	offset = int(dir.dirOffset)
	c := r.newCursor(dir.indexBlock, dir.indexOff, r.sb.DirectoryTable, "directory index of inode "+itoa(uint64(dir.Number)))
	defer c.close()
	var h [12]byte
	var nameBuf [maxNameLen]byte
	for i := 0; i < int(dir.indexCount); i++ {
		if err := c.read(h[:]); err != nil {
			return 0, 0, 0, err
		}
		idx := uint64(le.Uint32(h[0:]))
		start := uint64(le.Uint32(h[4:]))
		n := uint64(le.Uint32(h[8:])) + 1
		if n > maxNameLen {
			return 0, 0, 0, c.errorf("index entry %d name length %d", i, n)
		}
		if err := c.read(nameBuf[:n]); err != nil {
			return 0, 0, 0, err
		}
		if string(nameBuf[:n]) > name {
			break
		}
		if idx < pos || idx >= uint64(dir.listSize) || start >= r.dirEnd-r.sb.DirectoryTable {
			return 0, 0, 0, c.errorf("index entry %d (position %d, block %d) out of order or out of range", i, idx, start)
		}
		pos = idx
		block = r.sb.DirectoryTable + start
		offset = int((idx + uint64(dir.dirOffset)) % metaBlockSize)
	}
	return block, offset, pos, nil
}

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}
