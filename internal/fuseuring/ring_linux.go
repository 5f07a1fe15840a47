package fuseuring

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The few io_uring definitions this package needs (linux/io_uring.h).
const (
	setupCQSize       = 1 << 3
	setupSQE128       = 1 << 10
	setupSingleIssuer = 1 << 12
	setupDeferTaskrun = 1 << 13

	featSingleMmap = 1 << 0

	enterGetEvents = 1 << 0

	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000

	opPollAdd  = 6
	opURingCmd = 46

	sqeSize = 128 // with setupSQE128
	cqeSize = 16
)

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

// ring is one io_uring instance used by a single thread: submissions and
// completions are not locked.
type ring struct {
	fd          int
	ringMem     []byte // SQ and CQ rings (one mapping: IORING_FEAT_SINGLE_MMAP)
	sqeMem      []byte
	sqHead      *uint32
	sqTail      *uint32
	sqMask      uint32
	sqArray     unsafe.Pointer
	cqHead      *uint32
	cqTail      *uint32
	cqMask      uint32
	cqes        unsafe.Pointer
	localTail   uint32 // SQEs prepared, not yet published
	unsubmitted uint32 // SQEs published, not yet passed to io_uring_enter
}

type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

func newRing(entries uint32, extraFlags uint32) (*ring, error) {
	p := params{flags: setupSQE128 | setupCQSize | extraFlags, cqEntries: 2 * entries}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &ring{fd: int(fd)}
	if p.features&featSingleMmap == 0 {
		r.close()
		return nil, fmt.Errorf("io_uring: kernel without IORING_FEAT_SINGLE_MMAP")
	}
	size := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*cqeSize)
	mem, err := unix.Mmap(r.fd, offSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.close()
		return nil, fmt.Errorf("io_uring: mapping the rings: %w", err)
	}
	r.ringMem = mem
	sqes, err := unix.Mmap(r.fd, offSQEs, int(p.sqEntries*sqeSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.close()
		return nil, fmt.Errorf("io_uring: mapping the submission entries: %w", err)
	}
	r.sqeMem = sqes
	at := func(off uint32) unsafe.Pointer { return unsafe.Pointer(&mem[off]) }
	r.sqHead = (*uint32)(at(p.sqOff.head))
	r.sqTail = (*uint32)(at(p.sqOff.tail))
	r.sqMask = *(*uint32)(at(p.sqOff.ringMask))
	r.sqArray = at(p.sqOff.array)
	r.cqHead = (*uint32)(at(p.cqOff.head))
	r.cqTail = (*uint32)(at(p.cqOff.tail))
	r.cqMask = *(*uint32)(at(p.cqOff.ringMask))
	r.cqes = at(p.cqOff.cqes)
	r.localTail = atomic.LoadUint32(r.sqTail)
	return r, nil
}

// sqe returns a zeroed submission entry, or nil when the queue is full.
func (r *ring) sqe() []byte {
	head := atomic.LoadUint32(r.sqHead)
	if r.localTail-head > r.sqMask {
		return nil
	}
	i := r.localTail & r.sqMask
	*(*uint32)(unsafe.Add(r.sqArray, 4*uintptr(i))) = i
	r.localTail++
	e := r.sqeMem[i*sqeSize : (i+1)*sqeSize]
	clear(e)
	return e
}

// submitAndWait publishes the prepared entries and waits for at least
// want completions. It always collects completions, even with want 0: with
// IORING_SETUP_DEFER_TASKRUN they are posted only then.
func (r *ring) submitAndWait(want uint32) error {
	tail := atomic.LoadUint32(r.sqTail)
	r.unsubmitted += r.localTail - tail
	atomic.StoreUint32(r.sqTail, r.localTail)
	for {
		n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(r.unsubmitted), uintptr(want), enterGetEvents, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return fmt.Errorf("io_uring_enter: %w", errno)
		}
		r.unsubmitted -= uint32(n)
		return nil
	}
}

// hasUnsubmitted reports whether entries await submission.
func (r *ring) hasUnsubmitted() bool {
	return r.unsubmitted > 0 || r.localTail != atomic.LoadUint32(r.sqTail)
}

// completions calls f for every completion ready and consumes them.
func (r *ring) completions(f func(cqe)) {
	head := *r.cqHead
	tail := atomic.LoadUint32(r.cqTail)
	for ; head != tail; head++ {
		c := *(*cqe)(unsafe.Add(r.cqes, uintptr(head&r.cqMask)*cqeSize))
		atomic.StoreUint32(r.cqHead, head+1) // free the slot before f may submit more
		f(c)
	}
}

func (r *ring) close() {
	if r.sqeMem != nil {
		unix.Munmap(r.sqeMem)
	}
	if r.ringMem != nil {
		unix.Munmap(r.ringMem)
	}
	unix.Close(r.fd)
}

func putUint16(b []byte, v uint16) { *(*uint16)(unsafe.Pointer(&b[0])) = v }
func putUint32(b []byte, v uint32) { *(*uint32)(unsafe.Pointer(&b[0])) = v }
func putUint64(b []byte, v uint64) { *(*uint64)(unsafe.Pointer(&b[0])) = v }
func getUint32(b []byte) uint32    { return *(*uint32)(unsafe.Pointer(&b[0])) }
func getUint64(b []byte) uint64    { return *(*uint64)(unsafe.Pointer(&b[0])) }
