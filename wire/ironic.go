package wire

import (
	"encoding/json"
)

// API microversions that matter on the ramdisk endpoints.
const (
	// LookupAPIVersion is the microversion the agent declares on lookup
	// (the lowest that hands out an agent token).
	LookupAPIVersion = "1.62"
	// HeartbeatAPIVersion is the microversion the agent declares on
	// heartbeat (the lowest that accepts agent_verify_ca).
	HeartbeatAPIVersion = "1.68"
	// APIVersionHeader is the microversion header of the Ironic API.
	APIVersionHeader = "X-OpenStack-Ironic-API-Version"
	// APIMinVersionHeader and APIMaxVersionHeader advertise the range.
	APIMinVersionHeader = "X-OpenStack-Ironic-API-Minimum-Version"
	APIMaxVersionHeader = "X-OpenStack-Ironic-API-Maximum-Version"
	// RequestIDHeader carries ipa-global-request-id.
	RequestIDHeader = "X-OpenStack-Request-ID"
)

// Link is a hypermedia link in Ironic documents.
type Link struct {
	Href string `json:"href"`
	Rel  string `json:"rel"`
	Type string `json:"type,omitempty"`
}

// APIVersion is one entry of Ironic's version document.
type APIVersion struct {
	ID         string `json:"id"`
	Links      []Link `json:"links"`
	Status     string `json:"status"`
	MinVersion string `json:"min_version"`
	Version    string `json:"version"`
}

// RootDocument is the body of GET / on the Ironic API.
type RootDocument struct {
	Name           string       `json:"name"`
	Description    string       `json:"description"`
	DefaultVersion APIVersion   `json:"default_version"`
	Versions       []APIVersion `json:"versions"`
}

// LookupNode is the node part of a lookup answer; secrets are masked.
type LookupNode struct {
	UUID               string         `json:"uuid"`
	Properties         map[string]any `json:"properties"`
	InstanceInfo       map[string]any `json:"instance_info"`
	DriverInternalInfo map[string]any `json:"driver_internal_info"`
	Links              []Link         `json:"links,omitempty"`
}

// LookupConfig is the config part of a lookup answer.
type LookupConfig struct {
	HeartbeatTimeout float64 `json:"heartbeat_timeout"`
	// AgentToken is the token on the first lookup of an operation, "******"
	// on later ones, null when the declared API version is below 1.62.
	AgentToken                  *string         `json:"agent_token"`
	AgentTokenRequired          bool            `json:"agent_token_required"`
	Metrics                     json.RawMessage `json:"metrics,omitempty"`
	MetricsStatsd               json.RawMessage `json:"metrics_statsd,omitempty"`
	DisableDeepImageInspection  bool            `json:"disable_deep_image_inspection"`
	PermittedImageFormats       []string        `json:"permitted_image_formats,omitempty"`
	EnableBIOSBootloaderInstall *bool           `json:"enable_bios_bootloader_install,omitempty"`
	AgentMD5ChecksumEnable      *bool           `json:"agent_md5_checksum_enable,omitempty"`
}

// LookupResponse is the body of a successful GET /v1/lookup.
type LookupResponse struct {
	Node   LookupNode   `json:"node"`
	Config LookupConfig `json:"config"`
}

// HeartbeatRequest is the body of POST /v1/heartbeat/{node}.
type HeartbeatRequest struct {
	CallbackURL        string `json:"callback_url"`
	AgentToken         string `json:"agent_token,omitempty"`
	AgentVersion       string `json:"agent_version,omitempty"`
	AgentVerifyCA      string `json:"agent_verify_ca,omitempty"`
	AgentStatus        string `json:"agent_status,omitempty"`
	AgentStatusMessage string `json:"agent_status_message,omitempty"`
}

// IronicFault is the inner error document of the Ironic API.
type IronicFault struct {
	FaultCode   string  `json:"faultcode"`
	FaultString string  `json:"faultstring"`
	DebugInfo   *string `json:"debuginfo"`
}

// IronicError is the Ironic API error body: the fault as a JSON string
// inside error_message.
type IronicError struct {
	ErrorMessage string `json:"error_message"`
}

// NewIronicError builds the error body for a fault code and text.
func NewIronicError(faultCode, text string) IronicError {
	b, _ := json.Marshal(IronicFault{FaultCode: faultCode, FaultString: text})
	return IronicError{ErrorMessage: string(b)}
}

// Fault decodes the nested fault; if error_message is not JSON, it is taken
// as the fault string itself.
func (e IronicError) Fault() IronicFault {
	var f IronicFault
	if err := json.Unmarshal([]byte(e.ErrorMessage), &f); err != nil || f.FaultString == "" {
		return IronicFault{FaultString: e.ErrorMessage}
	}
	return f
}

// FaultText extracts the human-readable text of an Ironic API error body,
// falling back to the raw body (shortened) when it is not Ironic's shape.
func FaultText(body []byte) string {
	var e IronicError
	if err := json.Unmarshal(body, &e); err == nil && e.ErrorMessage != "" {
		return e.Fault().FaultString
	}
	s := string(body)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
