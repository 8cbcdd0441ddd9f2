package node

import "sync"

// group owns goroutines: goFunc starts one, wait joins all it started
// (hashicorp/raft's goFunc). Every goroutine the node starts is started
// through a group whose owner cancels their context and then waits, so none
// outlives its owner and nobody counts them by hand.
type group struct{ wg sync.WaitGroup }

// goFunc runs f in a new goroutine owned by g.
func (g *group) goFunc(f func()) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f()
	}()
}

// wait returns once every goroutine started by goFunc has returned.
func (g *group) wait() { g.wg.Wait() }
