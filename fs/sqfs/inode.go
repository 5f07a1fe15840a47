package sqfs

import (
	"encoding/binary"
	"io/fs"
	"sync"
	"time"
)

// InodeType is the kind of an inode, with basic and extended forms folded
// together (Inode.Extended tells them apart).
type InodeType uint8

const (
	TypeDir InodeType = iota + 1
	TypeFile
	TypeSymlink
	TypeBlockDev
	TypeCharDev
	TypeFifo
	TypeSocket
)

func (t InodeType) String() string {
	names := [...]string{"?", "dir", "file", "symlink", "blockdev", "chardev", "fifo", "socket"}
	if int(t) < len(names) {
		return names[t]
	}
	return "?"
}

// modeType maps an inode type to the io/fs type bits.
func (t InodeType) modeType() fs.FileMode {
	switch t {
	case TypeDir:
		return fs.ModeDir
	case TypeSymlink:
		return fs.ModeSymlink
	case TypeBlockDev:
		return fs.ModeDevice
	case TypeCharDev:
		return fs.ModeDevice | fs.ModeCharDevice
	case TypeFifo:
		return fs.ModeNamedPipe
	case TypeSocket:
		return fs.ModeSocket
	}
	return 0
}

var unixTypeBits = [...]uint32{TypeDir: 0o040000, TypeFile: 0o100000, TypeSymlink: 0o120000,
	TypeBlockDev: 0o060000, TypeCharDev: 0o020000, TypeFifo: 0o010000, TypeSocket: 0o140000}

// inodeFixedSize is the size of each on-disk inode type's fixed part after
// the common 16-byte header, indexed by the raw type.
var inodeFixedSize = [...]int{1: 16, 2: 16, 3: 8, 4: 8, 5: 8, 6: 4, 7: 4, 8: 24, 9: 40, 10: 8, 11: 12, 12: 12, 13: 8, 14: 8}

// Inode is a decoded inode. It is immutable once returned and may be shared
// between goroutines.
type Inode struct {
	Ref      uint64 // inode reference: metadata block (relative to the inode table) << 16 | offset
	Type     InodeType
	Extended bool
	Perm     uint16 // permission bits including setuid, setgid and sticky (07777)
	UID, GID uint32
	MTime    uint32 // seconds since the epoch
	Number   uint32 // inode number, 1..InodeCount
	Nlink    uint32
	Size     uint64 // file size, symlink target length, or directory listing size as the kernel reports it
	Rdev     uint32 // device number as squashfs encodes it (see Major, Minor)

	xattrIndex uint32 // noXattr when none

	// Directories.
	dirBlock   uint32 // start of the listing relative to the directory table
	dirOffset  uint16
	listSize   uint32 // bytes of listing (file_size - 3)
	Parent     uint32 // inode number of the parent directory
	indexCount uint16
	indexBlock uint64 // absolute position of the index that follows an extended directory inode
	indexOff   int

	// Regular files.
	blocksStart  uint64
	fragment     uint32 // noFragment when the tail is not in a fragment
	fragOffset   uint32
	Sparse       uint64 // bytes saved by sparse blocks (extended files)
	blockCount   uint64 // full blocks, from the size (the list is read on first use)
	listBlock    uint64 // where the block list starts in the inode table
	listOff      int    //
	blocksOnce   sync.Once
	blocksErr    error
	blockSizes   []uint32 // on-disk size words of the full blocks
	blockOffsets []uint64 // absolute position of each block

	// Symlinks.
	Target string
}

// Mode returns the io/fs mode: type bits and the permission bits with
// setuid, setgid and sticky mapped to their fs.FileMode flags.
func (i *Inode) Mode() fs.FileMode {
	m := i.Type.modeType() | fs.FileMode(i.Perm&0o777)
	if i.Perm&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if i.Perm&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if i.Perm&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// UnixMode returns the mode as stat(2) reports it (S_IFMT bits | 07777).
func (i *Inode) UnixMode() uint32 {
	return unixTypeBits[i.Type] | uint32(i.Perm&0o7777)
}

// ModTime returns the modification time.
func (i *Inode) ModTime() time.Time { return time.Unix(int64(i.MTime), 0) }

// Major and Minor decode the device number of a device inode the way Linux's
// new_decode_dev does.
func (i *Inode) Major() uint32 { return (i.Rdev & 0xfff00) >> 8 }
func (i *Inode) Minor() uint32 { return (i.Rdev & 0xff) | ((i.Rdev >> 12) & 0xfff00) }

// HasXattrs reports whether the inode has extended attributes.
func (i *Inode) HasXattrs() bool { return i.xattrIndex != noXattr }

// BlockCount returns the number of full data blocks of a regular file
// (the tail in a fragment is not counted).
func (i *Inode) BlockCount() int { return int(min(i.blockCount, 1<<40)) }

// HasFragment reports whether the file's tail lives in a fragment block.
func (i *Inode) HasFragment() bool { return i.fragment != noFragment }

// Inode returns the inode with reference ref.
func (r *Reader) Inode(ref uint64) (*Inode, error) {
	block := ref >> 16
	offset := int(ref & 0xffff)
	const what = "inode table"
	if block >= r.sb.DirectoryTable-r.sb.InodeTable || offset >= metaBlockSize {
		return nil, r.corrupt(what, "inode reference %#x out of range", ref)
	}
	c := r.newCursor(r.sb.InodeTable+block, offset, r.sb.DirectoryTable, what)
	defer c.close()
	ino, err := r.parseInode(c)
	if err != nil {
		return nil, err
	}
	ino.Ref = ref
	return ino, nil
}

// Root returns the root directory inode.
func (r *Reader) Root() *Inode { return r.root }

func (r *Reader) parseInode(c *metaCursor) (*Inode, error) {
	le := binary.LittleEndian
	var b [40]byte
	if err := c.read(b[:16]); err != nil {
		return nil, err
	}
	rawType := le.Uint16(b[0:])
	ino := &Inode{
		Perm:       le.Uint16(b[2:]) & 0o7777,
		MTime:      le.Uint32(b[8:]),
		Number:     le.Uint32(b[12:]),
		xattrIndex: noXattr,
		fragment:   noFragment,
	}
	if rawType < 1 || rawType > 14 {
		return nil, c.errorf("inode type %d unknown", rawType)
	}
	ino.Type = InodeType((rawType-1)%7 + 1)
	ino.Extended = rawType > 7
	if ino.Number == 0 || ino.Number > r.sb.InodeCount {
		return nil, c.errorf("inode number %d outside 1..%d", ino.Number, r.sb.InodeCount)
	}
	var err error
	if ino.UID, err = r.id(le.Uint16(b[4:])); err != nil {
		return nil, err
	}
	if ino.GID, err = r.id(le.Uint16(b[6:])); err != nil {
		return nil, err
	}
	p := b[:inodeFixedSize[rawType]]
	if err := c.read(p); err != nil {
		return nil, err
	}
	switch rawType {
	case 1: // basic directory
		ino.dirBlock = le.Uint32(p[0:])
		ino.Nlink = le.Uint32(p[4:])
		fileSize := uint32(le.Uint16(p[8:]))
		ino.dirOffset = le.Uint16(p[10:])
		ino.Parent = le.Uint32(p[12:])
		if err := r.setDirSize(ino, fileSize, c); err != nil {
			return nil, err
		}
	case 8: // extended directory
		ino.Nlink = le.Uint32(p[0:])
		fileSize := le.Uint32(p[4:])
		ino.dirBlock = le.Uint32(p[8:])
		ino.Parent = le.Uint32(p[12:])
		ino.indexCount = le.Uint16(p[16:])
		ino.dirOffset = le.Uint16(p[18:])
		ino.xattrIndex = le.Uint32(p[20:])
		if err := r.setDirSize(ino, fileSize, c); err != nil {
			return nil, err
		}
		ino.indexBlock, ino.indexOff = c.position()
	case 2: // basic file
		ino.blocksStart = uint64(le.Uint32(p[0:]))
		ino.fragment = le.Uint32(p[4:])
		ino.fragOffset = le.Uint32(p[8:])
		ino.Size = uint64(le.Uint32(p[12:]))
		ino.Nlink = 1
		if err := r.checkFile(ino, c); err != nil {
			return nil, err
		}
	case 9: // extended file
		ino.blocksStart = le.Uint64(p[0:])
		ino.Size = le.Uint64(p[8:])
		ino.Sparse = le.Uint64(p[16:])
		ino.Nlink = le.Uint32(p[24:])
		ino.fragment = le.Uint32(p[28:])
		ino.fragOffset = le.Uint32(p[32:])
		ino.xattrIndex = le.Uint32(p[36:])
		if err := r.checkFile(ino, c); err != nil {
			return nil, err
		}
	case 3, 10: // symlink
		ino.Nlink = le.Uint32(p[0:])
		size := le.Uint32(p[4:])
		if size == 0 || size > 4096 {
			return nil, c.errorf("symlink inode %d has target length %d (must be 1..4096)", ino.Number, size)
		}
		t := make([]byte, size)
		if err := c.read(t); err != nil {
			return nil, err
		}
		ino.Target, ino.Size = string(t), uint64(size)
		if rawType == 10 {
			var x [4]byte
			if err := c.read(x[:]); err != nil {
				return nil, err
			}
			ino.xattrIndex = le.Uint32(x[:])
		}
	case 4, 5, 11, 12: // devices
		ino.Nlink = le.Uint32(p[0:])
		ino.Rdev = le.Uint32(p[4:])
		if rawType > 7 {
			ino.xattrIndex = le.Uint32(p[8:])
		}
	case 6, 7, 13, 14: // fifo, socket
		ino.Nlink = le.Uint32(p[0:])
		if rawType > 7 {
			ino.xattrIndex = le.Uint32(p[4:])
		}
	}
	if ino.xattrIndex != noXattr && ino.xattrIndex >= r.xattrCount {
		return nil, c.errorf("inode %d has xattr index %d but the image has %d xattr sets", ino.Number, ino.xattrIndex, r.xattrCount)
	}
	return ino, nil
}

func (r *Reader) setDirSize(ino *Inode, fileSize uint32, c *metaCursor) error {
	// The stored size is 3 more than the listing: the kernel reports it as
	// the directory's size, counting "." and "..".
	if fileSize < 3 {
		return c.errorf("directory inode %d has size %d (< 3)", ino.Number, fileSize)
	}
	if uint64(ino.dirBlock) >= r.dirEnd-r.sb.DirectoryTable || ino.dirOffset >= metaBlockSize {
		return c.errorf("directory inode %d listing at %d:%d outside the directory table", ino.Number, ino.dirBlock, ino.dirOffset)
	}
	ino.Size = uint64(fileSize)
	ino.listSize = fileSize - 3
	return nil
}

// checkFile validates a file inode's tail and data start and notes where
// its block list is. The list itself is read on first use (loadBlocks): a
// walk that only stats files never pays for it.
func (r *Reader) checkFile(ino *Inode, c *metaCursor) error {
	bs := uint64(r.sb.BlockSize)
	ino.blockCount = ino.Size / bs
	if ino.fragment == noFragment {
		ino.blockCount = (ino.Size + bs - 1) / bs
	} else {
		if ino.fragment >= r.sb.FragmentCount {
			return c.errorf("file inode %d uses fragment %d of %d", ino.Number, ino.fragment, r.sb.FragmentCount)
		}
		if uint64(ino.fragOffset)+ino.Size%bs > bs {
			return c.errorf("file inode %d tail at fragment offset %d runs past the block size", ino.Number, ino.fragOffset)
		}
		if ino.Size%bs == 0 {
			return c.errorf("file inode %d has a fragment but no tail", ino.Number)
		}
	}
	if ino.blocksStart > r.sb.BytesUsed {
		return c.errorf("file inode %d data starts at %d beyond the image end %d", ino.Number, ino.blocksStart, r.sb.BytesUsed)
	}
	// The list must fit in what the inode table can hold decoded: every
	// metadata block takes at least 3 bytes on disk and yields at most 8 KiB.
	tableMax := ((r.sb.DirectoryTable-r.sb.InodeTable)/3 + 1) * metaBlockSize
	if ino.Size > 1<<62 || ino.blockCount > tableMax/4 {
		return c.errorf("file inode %d has size %d: its block list cannot fit in the inode table", ino.Number, ino.Size)
	}
	ino.listBlock, ino.listOff = c.position()
	return nil
}

// loadBlocks reads a file's block list once.
func (r *Reader) loadBlocks(ino *Inode) error {
	ino.blocksOnce.Do(func() {
		if ino.blockCount == 0 {
			return
		}
		c := r.newCursor(ino.listBlock, ino.listOff, r.sb.DirectoryTable, "inode table")
		defer c.close()
		ino.blocksErr = r.readBlockList(ino, c)
	})
	return ino.blocksErr
}

// readBlockList reads the block size words that follow a file inode. The
// count comes from the file size, which is untrusted: the list is read in
// chunks, so memory grows only with bytes actually present in the table.
func (r *Reader) readBlockList(ino *Inode, c *metaCursor) error {
	bs := uint64(r.sb.BlockSize)
	n := ino.blockCount
	const chunk = 2048
	var buf [chunk * 4]byte
	sizes := make([]uint32, 0, min(n, chunk))
	offsets := make([]uint64, 0, min(n, chunk))
	pos := ino.blocksStart
	for left := n; left > 0; {
		k := min(left, chunk)
		if err := c.read(buf[:k*4]); err != nil {
			return err
		}
		for j := uint64(0); j < k; j++ {
			w := binary.LittleEndian.Uint32(buf[j*4:])
			size := uint64(w & dataSizeMask)
			if size > bs || w&^(dataSizeMask|dataUncompressed) != 0 {
				return c.errorf("file inode %d block %d has size word %#x", ino.Number, uint64(len(sizes)), w)
			}
			if pos+size > r.sb.BytesUsed {
				return c.errorf("file inode %d block %d at %d+%d runs past the image end %d", ino.Number, uint64(len(sizes)), pos, size, r.sb.BytesUsed)
			}
			sizes = append(sizes, w)
			offsets = append(offsets, pos)
			pos += size
		}
		left -= k
	}
	ino.blockSizes, ino.blockOffsets = sizes, offsets
	return nil
}

// id resolves an index into the id table.
func (r *Reader) id(idx uint16) (uint32, error) {
	if int(idx) >= len(r.ids) {
		return 0, r.corrupt("id table", "id index %d out of %d", idx, len(r.ids))
	}
	return r.ids[idx], nil
}
