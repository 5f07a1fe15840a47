package fuseuring

// FailSetup makes the setup of the queues for which f returns an error fail.
func FailSetup(f func(qid int) error) { failSetup = f }

// SetWindowHook makes queue threads call f in each commit window, as
// SCHED_IDLE threads.
func SetWindowHook(f func()) {
	if f == nil {
		windowHook.Store(nil)
	} else {
		windowHook.Store(&f)
	}
}

// Yielding reports whether the queues commit as SCHED_IDLE threads when a
// caller moves.
func (r *Rings) Yielding() bool { return r.yielding.Load() }
