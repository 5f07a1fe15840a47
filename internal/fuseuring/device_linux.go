package fuseuring

import (
	"errors"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// What still comes over /dev/fuse while the rings serve: FORGET (and
// BATCH_FORGET) for every inode the kernel drops, and INTERRUPT. A reader
// blocked on the device is woken by each of them: rm -rf makes a FORGET
// per entry, so each unlink would pay a wake-up of a thread on the other
// CPU, an inter-processor interrupt that costs a virtual machine more
// than the unlink's whole round trip. So the housekeeping thread reads the
// device without blocking while requests come, sleeping devicePollInterval
// between empty reads; the kernel meanwhile queues the FORGETs with no one
// to wake and hands them over in batches. The same rounds end overlong
// commit windows (see yield_linux.go). After deviceIdlePolls rounds with
// nothing to do it blocks again, so an idle mount costs nothing.
const (
	devicePollInterval = time.Millisecond
	deviceIdlePolls    = 50
)

// ServeDevice serves the requests the kernel sends over /dev/fuse while
// the rings serve the rest, in place of go-fuse's Server.Serve, with the
// rings' ProtocolServer: an INTERRUPT then finds the request it is for
// even when a queue is serving it. Use it only when Start succeeded (after
// a failure /dev/fuse carries every request, and Serve's readers are
// needed). It returns when the connection ends, having closed go-fuse's
// descriptor as Serve would; call Close then.
func (r *Rings) ServeDevice() {
	r.goFuseReaders.Done() // Serve's reader, counted by NewServer, will not run
	runtime.LockOSThread() // its sleeps then wake it on its own CPU
	defer runtime.UnlockOSThread()
	defer r.goFuseFile.Close()
	buf := make([]byte, r.deviceBufSize)
	out := make([]byte, r.deviceBufSize)
	// Without an eventfd or a non-blocking device, reads block, EAGAIN
	// never comes, and queues do not yield (nothing would end a window).
	wakeFD, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err == nil {
		defer unix.Close(wakeFD)
		if err = unix.SetNonblock(r.devFD, true); err == nil {
			r.wakeFD = wakeFD
			r.yielding.Store(canLeaveIdlePolicy())
		}
	}
	defer func() {
		r.yielding.Store(false)
		r.endWindows(0) // no one is left to end them
	}()
	lastServed := r.served()
	for idle := 0; ; {
		n, err := unix.Read(r.devFD, buf)
		switch {
		case err == nil:
			idle = 0
			r.handleDevice(buf[:n], out)
		case errors.Is(err, unix.EAGAIN):
			inWindow := r.rescue()
			if served := r.served(); inWindow || served != lastServed && r.yielding.Load() {
				lastServed, idle = served, 0
			}
			if idle++; idle < deviceIdlePolls {
				unix.Nanosleep(&unix.Timespec{Nsec: devicePollInterval.Nanoseconds()}, nil)
			} else if !r.park() {
				return
			}
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.ENOENT): // ENOENT: a request withdrawn while read
		default: // ENODEV: unmounted
			return
		}
	}
}

// park blocks until the device has a request, a queue begins a commit
// window or the connection ends, and reports whether to go on.
func (r *Rings) park() bool {
	r.parked.Store(true)
	if r.rescue() { // a window began before the queues could see parked
		r.parked.Store(false)
		return true
	}
	fds := []unix.PollFd{{Fd: int32(r.devFD), Events: unix.POLLIN}, {Fd: int32(r.wakeFD), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if err == nil {
			break // an error state (unmounted) shows in the next read
		}
		if !errors.Is(err, unix.EINTR) {
			return false
		}
	}
	r.parked.Store(false)
	var b [8]byte
	unix.Read(r.wakeFD, b[:])
	return true
}

// handleDevice answers one request read from the device, if it wants an
// answer.
func (r *Rings) handleDevice(in, out []byte) {
	if len(in) < inHeaderSize {
		return
	}
	n, status := r.ps.HandleRequest([][]byte{in}, [][]byte{out})
	if n == 0 && status.Ok() {
		return // FORGET and the like: no reply
	}
	if !status.Ok() || n < outHeaderSize {
		n = putErrorReply(out, getUint64(in[8:]), status)
	}
	unix.Write(r.devFD, out[:n])
}
