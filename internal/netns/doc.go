// Package netns makes named network namespaces (iproute2's, under
// /run/netns) and runs code inside them: a function on an OS thread that
// has entered the namespace (the sockets it opens, and the processes it
// starts, stay there), and a dialer for clients that reach addresses in
// it. Tests and the virtual rack keep every address of their networks in
// such a namespace, so that nothing they send leaves it. Linux only; root.
package netns
