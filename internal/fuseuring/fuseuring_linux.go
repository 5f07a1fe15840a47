// Package fuseuring serves a mounted go-fuse file system over FUSE-over-io_uring
// (Linux 6.14): one queue per CPU, each a thread bound to that CPU, so a
// request is answered on the CPU that made it. A classic /dev/fuse round trip
// wakes a server thread on another CPU and then the caller again; on a virtual
// machine each of those cross-CPU wake-ups is an inter-processor interrupt
// that costs tens of microseconds, which is most of a metadata request's time.
//
// go-fuse makes the mount and answers INIT on /dev/fuse; once every queue has
// registered, the kernel sends every request but FORGET and INTERRUPT
// through the rings, whose requests go to the same RawFileSystem through
// go-fuse's ProtocolServer. Those two, still on /dev/fuse, are served by a
// housekeeping thread (ServeDevice) with the same ProtocolServer, in place
// of go-fuse's readers. See yield_linux.go for how queues keep callers on
// their CPU.
package fuseuring

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Capability is the INIT flag a server asks for to be allowed to use rings;
// the kernel grants it only while its enable_uring switch is on.
const Capability = fuse.CAP_OVER_IO_URING

const switchPath = "/sys/module/fuse/parameters/enable_uring"

// ErrNotGranted means the kernel did not grant FUSE over io_uring to the
// mount: a kernel before 6.14, or its enable_uring switch is off.
var ErrNotGranted = errors.New("fuseuring: the kernel did not grant FUSE over io_uring (needs Linux 6.14 and " + switchPath + " = Y)")

// ErrStuck means rings were granted but could neither be set up nor
// withdrawn: the kernel holds every request of the mount back, so the caller
// must unmount it.
var ErrStuck = errors.New("fuseuring: the mount waits for rings that cannot be set up")

// KernelSwitch reports whether the kernel's enable_uring switch is on, and
// whether the kernel has one.
func KernelSwitch() (on, exists bool) {
	b, err := os.ReadFile(switchPath)
	if err != nil {
		return false, false
	}
	return strings.TrimSpace(string(b)) == "Y", true
}

// Usable reports why this process cannot make the rings a queue needs (for
// example io_uring disabled by the kernel.io_uring_disabled sysctl, or a
// seccomp filter), or nil. A server asks for Capability only if they are
// usable: once granted, the kernel holds requests back until rings come,
// and without a ring it cannot even be told to stop waiting.
func Usable() error {
	r, err := newQueueRing()
	if err != nil {
		return err
	}
	r.close()
	return nil
}

// EnableKernelSwitch turns the kernel's switch on (root only). It lets
// servers that ask for rings use them; servers that do not ask are unaffected.
func EnableKernelSwitch() error {
	return os.WriteFile(switchPath, []byte("Y"), 0)
}

// Kernel ABI (linux/fuse.h).
const (
	cmdRegister       = 1
	cmdCommitAndFetch = 2

	inHeaderSize  = 40
	outHeaderSize = 16
	opInOffset    = 128 // struct fuse_uring_req_header: in_out[128], op_in[128], ring_ent_in_out
	opInSize      = 128
	entInOutOff   = 256
	headerSize    = 288

	queueDepth = 4
	stopToken  = ^uint64(0)
)

// Rings is the set of queues serving one mount.
type Rings struct {
	queues []*queue
	wg     sync.WaitGroup
	devFD  int
	ps     *fuse.ProtocolServer

	goFuseFile    *os.File        // go-fuse's own /dev/fuse descriptor
	goFuseReaders *sync.WaitGroup // the /dev/fuse readers go-fuse's Unmount waits for
	deviceBufSize int             // a /dev/fuse read takes the largest request

	// The housekeeping thread (ServeDevice) and the commit windows (see
	// yield_linux.go).
	yielding atomic.Bool // queues commit as SCHED_IDLE threads
	parked   atomic.Bool // the housekeeping thread waits for the device
	wakeFD   int         // an eventfd that ends that wait
}

type queue struct {
	queueState
	rings   *Rings
	id      int
	ring    *ring
	eventFD int
	devFD   int
	ps      *fuse.ProtocolServer
	entries []*entry
	err     error // from setup

	proceed    chan bool  // every queue is set up: register (or withdraw)
	registered chan error // registration done
	served     atomic.Uint64
}

type entry struct {
	header  []byte // struct fuse_uring_req_header
	payload []byte
	iov     [2]unix.Iovec
	in      [3][]byte
	out     [2][]byte
}

// Start serves the mount of server over io_uring. raw and opts must be the
// RawFileSystem and MountOptions server was made with, and opts must have
// asked for Capability. Call it right after fuse.NewServer: once the kernel
// has granted rings it holds every request back until each CPU's queue has
// registered, so nothing may touch the mount before Start returns.
//
// Queues are set up in two phases so that a failure leaves the mount
// working: first every queue makes its ring and buffers; only if all
// succeed do they register. Otherwise Start sends the kernel a malformed
// registration, on which the kernel withdraws rings from the connection and
// serves it over /dev/fuse.
func Start(server *fuse.Server, raw fuse.RawFileSystem, opts *fuse.MountOptions) (*Rings, error) {
	kernel := server.KernelSettings()
	if kernel.Flags64()&Capability == 0 || opts.ExtraCapabilities&Capability == 0 {
		return nil, ErrNotGranted
	}
	devFD, goFuseFile, goFuseReaders, err := deviceFD(server)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStuck, err)
	}
	ps := fuse.NewProtocolServer(raw, opts)
	err = replayInit(ps, kernel)
	var cpus []int
	if err == nil {
		cpus, err = possibleCPUs()
	}
	if err != nil {
		return nil, withdrawAfter(devFD, err)
	}
	payloadSize := roundUp(max(8192, opts.MaxWrite, 128<<10), os.Getpagesize())
	r := &Rings{devFD: devFD, ps: ps, goFuseFile: goFuseFile, goFuseReaders: goFuseReaders, deviceBufSize: payloadSize + os.Getpagesize()}
	prepared := make(chan *queue)
	for _, cpu := range cpus {
		q := &queue{rings: r, id: cpu, devFD: devFD, ps: ps, proceed: make(chan bool, 1), registered: make(chan error, 1)}
		r.queues = append(r.queues, q)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			q.run(payloadSize, prepared)
		}()
	}
	var setupErr error
	for range cpus {
		if q := <-prepared; q.err != nil && setupErr == nil {
			setupErr = fmt.Errorf("fuseuring: queue %d: %w", q.id, q.err)
		}
	}
	for _, q := range r.queues {
		q.proceed <- setupErr == nil
	}
	var registerErr error
	for _, q := range r.queues {
		if err := <-q.registered; err != nil && registerErr == nil {
			registerErr = fmt.Errorf("fuseuring: queue %d: %w", q.id, err)
		}
	}
	if setupErr != nil {
		r.wait()
		return nil, withdrawAfter(devFD, setupErr)
	}
	// A registration the kernel refused withdraws rings from the
	// connection; the queues that did register then simply stay idle.
	return r, registerErr
}

// Served returns how many requests each CPU's queue has answered.
func (r *Rings) Served() map[int]uint64 {
	m := map[int]uint64{}
	for _, q := range r.queues {
		m[q.id] = q.served.Load()
	}
	return m
}

// Close stops the queues and releases their memory. Call it after the
// mount is gone: the kernel ends a connection's rings itself at unmount.
func (r *Rings) Close() {
	for _, q := range r.queues {
		if q.eventFD > 0 {
			unix.Write(q.eventFD, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		}
	}
	r.wait()
	unix.Close(r.devFD)
}

// wait waits for the queue threads to end and closes their stop events
// (only then: a thread may end before it is told to).
func (r *Rings) wait() {
	r.wg.Wait()
	for _, q := range r.queues {
		if q.eventFD > 0 {
			unix.Close(q.eventFD)
		}
	}
}

// run is a queue's thread: set up, wait for every queue to be set up,
// register, then serve until the connection ends or Close.
func (q *queue) run(payloadSize int, prepared chan<- *queue) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	q.tid.Store(int32(unix.Gettid()))
	var cpus unix.CPUSet
	cpus.Set(q.id)
	unix.SchedSetaffinity(0, &cpus) // best effort: a CPU may be offline
	defer q.release()

	q.err = q.setup(payloadSize)
	prepared <- q
	if !<-q.proceed {
		q.registered <- nil
		return
	}
	err := q.register()
	q.registered <- err
	q.serve()
}

// failSetup lets tests make a queue's setup fail.
var failSetup func(qid int) error

func (q *queue) setup(payloadSize int) error {
	if failSetup != nil {
		if err := failSetup(q.id); err != nil {
			return err
		}
	}
	var err error
	if q.eventFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC); err != nil {
		return err
	}
	if q.ring, err = newQueueRing(); err != nil {
		return err
	}
	for range queueDepth {
		e, err := newEntry(payloadSize)
		if err != nil {
			return err
		}
		q.entries = append(q.entries, e)
	}
	return nil
}

// newQueueRing makes the ring of one queue: its entries and the stop event,
// used by one thread only.
func newQueueRing() (*ring, error) {
	return newRing(queueDepth+1, setupSingleIssuer|setupDeferTaskrun)
}

// register hands every entry to the kernel, and arms the stop event.
func (q *queue) register() error {
	for i := range q.entries {
		q.prepare(q.ring.sqe(), i, cmdRegister, 0)
	}
	s := q.ring.sqe()
	s[0] = opPollAdd
	putUint32(s[4:], uint32(q.eventFD))
	putUint32(s[28:], unix.POLLIN)
	putUint64(s[32:], stopToken)
	for {
		if err := q.ring.submitAndWait(0); err != nil {
			return err
		}
		// A registration that fails completes at once. EAGAIN: the
		// kernel has not finished INIT yet.
		var err error
		again := false
		q.ring.completions(func(c cqe) {
			switch {
			case c.res == -int32(unix.EAGAIN):
				q.prepare(q.ring.sqe(), int(c.userData), cmdRegister, 0)
				again = true
			case c.res < 0 && err == nil:
				err = fmt.Errorf("registering with the kernel: %w", unix.Errno(-c.res))
			}
		})
		if !again {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}

// withdrawAfter withdraws the rings after a failure to set them up, closes
// devFD and returns the failure (wrapping ErrStuck if the withdrawal failed).
func withdrawAfter(devFD int, failure error) error {
	defer unix.Close(devFD)
	if err := withdraw(devFD); err != nil {
		return fmt.Errorf("%w (%v); withdrawing the rings failed too: %w", ErrStuck, failure, err)
	}
	return failure
}

// withdraw sends the kernel a registration without buffers, which it
// refuses by turning rings off for the connection and releasing the
// requests it held back waiting for them.
func withdraw(devFD int) error {
	r, err := newRing(1, 0)
	if err != nil {
		return err
	}
	defer r.close()
	for range 100 {
		putRingCmd(r.sqe(), devFD, cmdRegister) // no buffers: sqe->len 0
		if err := r.submitAndWait(1); err != nil {
			return err
		}
		res := int32(0)
		r.completions(func(c cqe) { res = c.res })
		switch res {
		case -int32(unix.EINVAL):
			return nil // refused: rings are off for the connection
		case -int32(unix.EAGAIN): // INIT not finished
			time.Sleep(time.Millisecond)
		default:
			return fmt.Errorf("the kernel answered the withdrawal with %v", unix.Errno(-res))
		}
	}
	return errors.New("the kernel kept answering the withdrawal with EAGAIN")
}

func newEntry(payloadSize int) (*entry, error) {
	mem, err := unix.Mmap(-1, 0, os.Getpagesize()+payloadSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	e := &entry{header: mem[:headerSize], payload: mem[os.Getpagesize():]}
	e.iov[0] = unix.Iovec{Base: &e.header[0]}
	e.iov[0].SetLen(len(e.header))
	e.iov[1] = unix.Iovec{Base: &e.payload[0]}
	e.iov[1].SetLen(len(e.payload))
	return e, nil
}

// putRingCmd makes s a FUSE ring command on the connection devFD.
func putRingCmd(s []byte, devFD int, cmd uint32) {
	s[0] = opURingCmd
	putUint32(s[4:], uint32(devFD))
	putUint32(s[8:], cmd)
}

// prepare fills s with a FUSE ring command for entry i.
func (q *queue) prepare(s []byte, i int, cmd uint32, commitID uint64) {
	e := q.entries[i]
	putRingCmd(s, q.devFD, cmd)
	putUint64(s[16:], uint64(uintptr(unsafe.Pointer(&e.iov[0]))))
	putUint32(s[24:], 2)
	putUint64(s[32:], uint64(i))
	// struct fuse_uring_cmd_req at sqe->cmd: flags, commit_id, qid.
	putUint64(s[56:], commitID)
	putUint16(s[64:], uint16(q.id))
}

func (q *queue) serve() {
	live := len(q.entries)
	for {
		stop := false
		q.ring.completions(func(c cqe) {
			if c.userData == stopToken {
				stop = true
				return
			}
			i := int(c.userData)
			switch c.res {
			case 0:
				q.handle(i)
			case -int32(unix.EAGAIN), -int32(unix.EINTR):
				q.prepare(q.ring.sqe(), i, cmdRegister, 0)
			case -int32(unix.ENOTCONN), -int32(unix.ECANCELED):
				stop = true // the connection is gone
			default:
				// A command the kernel refused: the entry is lost, the
				// queue goes on with the others.
				if live--; live == 0 {
					stop = true
				}
			}
		})
		if stop {
			return
		}
		if err := q.commit(); err != nil {
			return
		}
		if err := q.ring.submitAndWait(1); err != nil {
			return
		}
	}
}

// handle answers the request in entry i and queues its commit, which also
// fetches the next request.
func (q *queue) handle(i int) {
	e := q.entries[i]
	h := e.header
	inLen := getUint32(h[0:])
	unique := getUint64(h[8:])
	q.noteCaller(getUint32(h[32:])) // struct fuse_in_header: len, opcode, unique, nodeid, uid, gid, pid
	commitID := getUint64(h[entInOutOff+8:])
	payloadLen := getUint32(h[entInOutOff+16:])
	opLen := int64(inLen) - inHeaderSize - int64(payloadLen)
	var n int
	status := fuse.EIO
	if opLen >= 0 && opLen <= opInSize && int(payloadLen) <= len(e.payload) {
		e.in = [3][]byte{h[:inHeaderSize], h[opInOffset : opInOffset+int(opLen)], e.payload[:payloadLen]}
		e.out = [2][]byte{h[:outHeaderSize], e.payload}
		n, status = q.ps.HandleRequest(e.in[:], e.out[:])
	}
	if !status.Ok() || n < outHeaderSize {
		n = putErrorReply(h, unique, status)
	}
	putUint32(h[entInOutOff+16:], uint32(n-outHeaderSize))
	q.served.Add(1)
	q.prepare(q.ring.sqe(), i, cmdCommitAndFetch, commitID)
}

// putErrorReply makes out the reply failing request unique with status
// (EIO where the request got no status), and returns its length.
func putErrorReply(out []byte, unique uint64, status fuse.Status) int {
	if status.Ok() {
		status = fuse.EIO
	}
	putUint32(out[0:], outHeaderSize)
	putUint32(out[4:], uint32(-int32(status)))
	putUint64(out[8:], unique)
	return outHeaderSize
}

func (q *queue) release() {
	if q.ring != nil {
		q.ring.close() // ends the entries' commands before their memory goes
	}
	for _, e := range q.entries {
		unix.Munmap(unsafe.Slice(&e.header[0], os.Getpagesize()+len(e.payload)))
	}
}

// replayInit gives the ProtocolServer the INIT the kernel sent, so it parses
// requests with the same negotiated settings as the /dev/fuse server.
func replayInit(ps *fuse.ProtocolServer, kernel *fuse.InitIn) error {
	in := *kernel
	in.Length = uint32(unsafe.Sizeof(in))
	req := unsafe.Slice((*byte)(unsafe.Pointer(&in)), unsafe.Sizeof(in))
	out := make([]byte, 4096)
	if _, st := ps.HandleRequest([][]byte{req}, [][]byte{out}); !st.Ok() {
		return fmt.Errorf("fuseuring: replaying INIT: %v", st)
	}
	if st := int32(getUint32(out[4:])); st != 0 {
		return fmt.Errorf("fuseuring: replaying INIT: %v", unix.Errno(-st))
	}
	return nil
}

// deviceFD returns a duplicate of server's /dev/fuse descriptor, go-fuse's
// own file of it, and the count of readers Unmount waits for (NewServer
// counts the one Serve will run). go-fuse does not export them; a test
// pins the field names for the go-fuse version in go.mod.
func deviceFD(server *fuse.Server) (int, *os.File, *sync.WaitGroup, error) {
	fail := errors.New("fuseuring: cannot find go-fuse's /dev/fuse descriptor (field layout changed)")
	v := reflect.ValueOf(server).Elem().FieldByName("fuseFD")
	if !v.IsValid() || v.Kind() != reflect.Pointer || v.IsNil() {
		return -1, nil, nil, fail
	}
	f := v.Elem().FieldByName("file")
	loops := v.Elem().FieldByName("loops")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*os.File]() || f.IsNil() || !loops.IsValid() || loops.Type() != reflect.TypeFor[sync.WaitGroup]() {
		return -1, nil, nil, fail
	}
	file := (*os.File)(f.UnsafePointer())
	raw, err := file.SyscallConn()
	if err != nil {
		return -1, nil, nil, err
	}
	dup := -1
	var dupErr error
	if err := raw.Control(func(fd uintptr) { dup, dupErr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, nil, nil, err
	}
	return dup, file, (*sync.WaitGroup)(unsafe.Pointer(loops.UnsafeAddr())), dupErr
}

// possibleCPUs lists the CPUs the kernel makes queues for (all possible
// CPUs, online or not).
func possibleCPUs() ([]int, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		return nil, err
	}
	var cpus []int
	for _, part := range strings.Split(strings.TrimSpace(string(b)), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		first, err1 := strconv.Atoi(lo)
		last := first
		var err2 error
		if isRange {
			last, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || last < first || last-first > 8192 {
			return nil, fmt.Errorf("fuseuring: /sys/devices/system/cpu/possible: cannot parse %q", b)
		}
		for c := first; c <= last; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

func roundUp(n, to int) int { return (n + to - 1) / to * to }
