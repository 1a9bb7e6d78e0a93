package cluster

import "hash/fnv"

// score is the rendezvous (highest random weight) score of a conductor
// for a node: FNV-1a over both names, then a 64-bit finaliser to spread
// FNV's weak high bits.
func score(conductor, node string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(conductor))
	h.Write([]byte{0})
	h.Write([]byte(node))
	x := h.Sum64()
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// Choose is the conductor that should own node among the live
// conductors: the one with the highest rendezvous score (ties, which need
// a 64-bit collision, go to the smaller name). Adding or removing a
// conductor moves only the nodes it wins or held. It returns "" when
// conductors is empty.
func Choose(conductors []string, node string) string {
	var (
		best      string
		bestScore uint64
	)
	for _, c := range conductors {
		s := score(c, node)
		if best == "" || s > bestScore || (s == bestScore && c < best) {
			best, bestScore = c, s
		}
	}
	return best
}
