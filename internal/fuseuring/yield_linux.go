package fuseuring

import (
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Keeping the caller on its CPU. A queue's answer wakes the caller, which
// sleeps in the kernel on the queue's CPU. The queue thread is running
// there at that moment, so the scheduler may put the caller on an idle
// CPU instead: an inter-processor interrupt, tens of microseconds on a
// virtual machine, and the caller's next request goes to that CPU's queue,
// whose answer sends it back. A serial caller (cp -a, tar) could pay that
// on every request. The scheduler counts a CPU that runs only SCHED_IDLE
// threads as idle, so a queue thread that has seen a caller arrive from
// another CPU's queue makes its next commits as one: the caller is woken
// on the queue's CPU and runs at once, and the queue thread takes its
// normal policy back as soon as it runs again. Callers that stay put
// (rm -rf does) do not pay for the two policy changes.
//
// Until then a busy CPU could starve the queue thread (SCHED_IDLE gets
// what nothing else wants), with requests of other callers on that CPU
// waiting for it: the housekeeping thread (ServeDevice) gives a queue
// thread its normal policy back when a commit window has lasted
// rescueAfter.
const rescueAfter = time.Millisecond

// windowHook, if set, runs in every commit window (tests).
var windowHook atomic.Pointer[func()]

// setPolicy gives thread tid (0: the calling thread) a scheduling policy.
// The attribute is the callee's own: unix.SchedSetAttr writes to it.
func setPolicy(tid int, policy uint32) error {
	return unix.SchedSetAttr(tid, &unix.SchedAttr{Policy: policy}, 0)
}

// canLeaveIdlePolicy reports whether a thread of this process may go back
// from SCHED_IDLE to its normal policy (root, or CAP_SYS_NICE or a
// RLIMIT_NICE of 20), tried on a thread of its own: a thread that cannot
// is thrown away.
func canLeaveIdlePolicy() bool {
	ok := make(chan bool)
	go func() {
		runtime.LockOSThread()
		if setPolicy(0, unix.SCHED_IDLE) != nil {
			runtime.UnlockOSThread()
			ok <- false
			return
		}
		if setPolicy(0, unix.SCHED_NORMAL) != nil {
			ok <- false // the thread stays locked and ends with the goroutine
			return
		}
		runtime.UnlockOSThread()
		ok <- true
	}()
	return <-ok
}

// commit submits the queue's answers. With r.yielding on it does so as a
// SCHED_IDLE thread (see above).
func (q *queue) commit() error {
	if q.yieldCommits == 0 || !q.rings.yielding.Load() || !q.ring.hasUnsubmitted() {
		return nil // submitted with the next wait
	}
	q.yieldCommits--
	q.windowSince.Store(nanotime())
	if q.rings.parked.Load() && q.rings.parked.CompareAndSwap(true, false) {
		q.rings.wakeHousekeeper()
	}
	setPolicy(0, unix.SCHED_IDLE)
	if hook := windowHook.Load(); hook != nil {
		(*hook)()
	}
	err := q.ring.submitAndWait(0)
	setPolicy(0, unix.SCHED_NORMAL)
	q.windowSince.Store(0)
	return err
}

// yieldAfterMove is how many commits a queue makes as a SCHED_IDLE thread
// after a caller came to it from another queue.
const yieldAfterMove = 64

// callers remembers which queue each caller (by process ID, hashed) last
// came through.
var callers [256]atomic.Uint64

// noteCaller records that process pid sent a request through q, and has q
// yield its next commits if pid came through another queue last time.
func (q *queue) noteCaller(pid uint32) {
	now := uint64(pid)<<32 | uint64(q.id)
	last := callers[pid%uint32(len(callers))].Swap(now)
	if last>>32 == uint64(pid) && last != now {
		q.yieldCommits = yieldAfterMove
	}
}

// rescue gives queue threads whose commit window has lasted rescueAfter
// their normal policy back, and reports whether any queue is in one.
func (r *Rings) rescue() (inWindow bool) { return r.endWindows(rescueAfter) }

// endWindows gives queue threads whose commit window has lasted longer
// than after their normal policy back, and reports whether any queue is
// in a window.
func (r *Rings) endWindows(after time.Duration) (inWindow bool) {
	now := nanotime()
	for _, q := range r.queues {
		since := q.windowSince.Load()
		if since == 0 {
			continue
		}
		inWindow = true
		if now-since >= after.Nanoseconds() && q.tid.Load() != 0 {
			setPolicy(int(q.tid.Load()), unix.SCHED_NORMAL)
		}
	}
	return inWindow
}

// wakeHousekeeper ends the housekeeping thread's wait for the device.
func (r *Rings) wakeHousekeeper() {
	unix.Write(r.wakeFD, []byte{1, 0, 0, 0, 0, 0, 0, 0})
}

// served sums the requests the queues have answered.
func (r *Rings) served() (n uint64) {
	for _, q := range r.queues {
		n += q.served.Load()
	}
	return n
}

var clockStart = time.Now()

// nanotime is a monotonic clock in nanoseconds, never 0.
func nanotime() int64 { return int64(time.Since(clockStart)) + 1 }

// queueState is what the housekeeping thread watches of a queue.
type queueState struct {
	tid         atomic.Int32 // the queue thread's thread ID
	windowSince atomic.Int64 // nanotime the commit window began, 0 outside one

	yieldCommits int // commits still to make as a SCHED_IDLE thread (queue thread only)
}
