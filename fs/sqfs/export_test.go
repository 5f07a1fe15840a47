package sqfs

import "slices"

// Test hooks for the external test package.

// MetaBlocksCached returns the sorted image positions of the metadata blocks
// the reader's metadata cache holds. With a cache large enough to keep
// everything, on a fresh Reader it lists every block a sequence of calls
// touched.
func MetaBlocksCached(r *Reader) []uint64 {
	c := r.metaCache
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]uint64, 0, len(c.entries))
	for k := range c.entries {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// DirListing returns where a directory inode's listing starts: the metadata
// block relative to the directory table, and the offset inside it.
func DirListing(ino *Inode) (block uint32, offset uint16) { return ino.dirBlock, ino.dirOffset }

// DirIndexCount returns the number of directory index entries of a directory inode.
func DirIndexCount(ino *Inode) int { return int(ino.indexCount) }
