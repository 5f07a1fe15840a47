package fuseuring

// FailSetup makes the setup of the queues for which f returns an error fail.
func FailSetup(f func(qid int) error) { failSetup = f }
