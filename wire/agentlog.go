package wire

// AgentLogPath is Rivet's own route of the agent's log (not part of IPA's
// API). GET with ?agent_token= (always required) answers the log the
// agent keeps in memory from ?offset=N on (default 0: all it kept), as
// text/plain; with ?follow=true it goes on sending what is logged until
// the client goes away or the agent stops. AgentLogOffsetHeader is the
// offset of the first byte sent: later than asked for when those bytes
// were dropped already.
const AgentLogPath = "/v1/rivet/logs"

// AgentLogOffsetHeader carries the offset of the first byte of an answer
// of AgentLogPath (the count of bytes the agent logged before it).
const AgentLogOffsetHeader = "X-Rivet-Log-Offset"
