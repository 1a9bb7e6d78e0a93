// Package client is the rivet CLI's client of an Ironic-style API — the
// Rivet conductor or a real Ironic — built on gophercloud's baremetal
// packages: noauth or http_basic, a CA bundle for https, the microversion
// negotiated with the server (the lower of its maximum and MaxVersion),
// pagination by the API's next links, and Ironic's error bodies turned
// into Go errors. Rivet's own routes (agent logs) go through the same
// gophercloud client.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/apiversions"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/httpbasic"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/noauth"

	"github.com/rivetmetal/rivet/wire"
)

// MaxVersion is the newest microversion whose shapes the CLI knows; it
// asks for the lower of this and the server's maximum.
const MaxVersion = "1.89"

// Client talks to one conductor (or Ironic).
type Client struct {
	sc    *gophercloud.ServiceClient
	root  *gophercloud.ServiceClient
	creds bool

	mu         sync.Mutex // guards negotiation
	negotiated bool
	version    Version
}

// Options configure a Client; the zero value talks without credentials
// and verifies TLS certificates against the system's CAs.
type Options struct {
	// Username and Password, when Username is set, are sent as HTTP
	// basic credentials on every request (http_basic).
	Username, Password string
	// CACertFile, when set, is a PEM bundle of the CAs that verify the
	// conductor's certificate, instead of the system's.
	CACertFile string
	// HTTPClient, when set, is used as is (CACertFile is then ignored).
	HTTPClient *http.Client
}

// maxCABundle caps a CA bundle file.
const maxCABundle = 4 << 20

// New returns a client of the API at baseURL (the root, without /v1). It
// sends nothing until the first call.
func New(baseURL string, o Options) (*Client, error) {
	hc := o.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if o.CACertFile != "" {
			pool, err := loadCAs(o.CACertFile)
			if err != nil {
				return nil, err
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		hc = &http.Client{Transport: tr}
	}
	base := strings.TrimSuffix(baseURL, "/")
	endpoint := func(path string) (*gophercloud.ServiceClient, error) {
		if o.Username != "" {
			return httpbasic.NewBareMetalHTTPBasic(httpbasic.EndpointOpts{IronicEndpoint: base + path,
				IronicUser: o.Username, IronicUserPassword: o.Password})
		}
		return noauth.NewBareMetalNoAuth(noauth.EndpointOpts{IronicEndpoint: base + path})
	}
	sc, err := endpoint("/v1/")
	if err != nil {
		return nil, fmt.Errorf("API client: %w", err)
	}
	root, err := endpoint("/")
	if err != nil {
		return nil, fmt.Errorf("API client: %w", err)
	}
	for _, c := range []*gophercloud.ServiceClient{sc, root} {
		c.HTTPClient = *hc
		c.UserAgent.Prepend("rivet")
	}
	return &Client{sc: sc, root: root, creds: o.Username != ""}, nil
}

// loadCAs reads a PEM CA bundle.
func loadCAs(path string) (*x509.CertPool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCABundle+1))
	if err != nil {
		return nil, fmt.Errorf("CA bundle %s: %w", path, err)
	}
	if len(data) > maxCABundle {
		return nil, fmt.Errorf("CA bundle %s: larger than %d bytes", path, maxCABundle)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// HasCredentials reports whether the client sends credentials.
func (c *Client) HasCredentials() bool { return c.creds }

// Version is an API microversion.
type Version struct{ Major, Minor int }

// String formats the version as "1.82".
func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// ParseVersion reads "1.82".
func ParseVersion(s string) (Version, error) {
	maj, min, ok := strings.Cut(strings.TrimSpace(s), ".")
	a, err1 := strconv.Atoi(maj)
	b, err2 := strconv.Atoi(min)
	if !ok || err1 != nil || err2 != nil {
		return Version{}, fmt.Errorf("%q is not an API version", s)
	}
	return Version{a, b}, nil
}

// less reports whether v is older than w.
func (v Version) less(w Version) bool {
	return v.Major < w.Major || v.Major == w.Major && v.Minor < w.Minor
}

// negotiate reads the server's maximum microversion (its root document)
// once and settles on the lower of it and MaxVersion. A failure is not
// remembered: the next call asks again (the server may come up).
func (c *Client) negotiate(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.negotiated {
		return nil
	}
	want, _ := ParseVersion(MaxVersion)
	list, err := apiversions.List(ctx, c.root).Extract()
	if err != nil {
		return apiError(err)
	}
	v := want
	if s := list.DefaultVersion.Version; s != "" {
		server, err := ParseVersion(s)
		if err != nil {
			return fmt.Errorf("the API's root document: %w", err)
		}
		if server.less(want) {
			v = server
		}
	} else {
		v = Version{1, 1} // a server without microversions
	}
	c.version, c.negotiated = v, true
	c.sc.Microversion = v.String()
	return nil
}

// NegotiatedVersion is the microversion the client uses (it asks the
// server the first time).
func (c *Client) NegotiatedVersion(ctx context.Context) (Version, error) {
	if err := c.negotiate(ctx); err != nil {
		return Version{}, err
	}
	return c.version, nil
}

// needs fails when the negotiated version is older than min: what needs
// it does not exist on the server.
func (c *Client) needs(ctx context.Context, min Version, what string) error {
	if err := c.negotiate(ctx); err != nil {
		return err
	}
	if c.version.less(min) {
		return fmt.Errorf("%s needs API %s; the server's is %s", what, min, c.version)
	}
	return nil
}

// IsUnauthorized reports whether err is the API refusing missing or
// wrong credentials (HTTP 401).
func IsUnauthorized(err error) bool { return StatusOf(err) == http.StatusUnauthorized }

// StatusOf is the HTTP status of an API refusal, 0 for other errors.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// Error is an error answer of the API.
type Error struct {
	Status  int
	Message string
}

// Error implements error.
func (e *Error) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status) }

// apiError turns gophercloud's unexpected-status error into an *Error
// with Ironic's fault string; other errors pass as they are.
func apiError(err error) error {
	var ue gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &ue) {
		return err
	}
	return &Error{Status: ue.Actual, Message: faultText(ue.Body)}
}

// faultText is the message of an Ironic error body, or the body itself.
func faultText(body []byte) string {
	var ie wire.IronicError
	if json.Unmarshal(body, &ie) == nil && ie.ErrorMessage != "" {
		return ie.Fault().FaultString
	}
	return strings.TrimSpace(string(body))
}

// do sends a request of the versioned API (path under /v1/) and decodes
// a JSON answer into out when out is not nil.
func (c *Client) do(ctx context.Context, method, path string, body, out any, ok ...int) error {
	if err := c.negotiate(ctx); err != nil {
		return err
	}
	opts := &gophercloud.RequestOpts{JSONBody: body, JSONResponse: out, OkCodes: ok}
	if _, err := c.sc.Request(ctx, method, c.sc.ServiceURL(path), opts); err != nil {
		return fmt.Errorf("%s /v1/%s: %w", method, path, apiError(err))
	}
	return nil
}

// stream sends a GET of the versioned API and returns the answer with its
// body unread; the caller closes it.
func (c *Client) stream(ctx context.Context, path string) (*http.Response, error) {
	if err := c.negotiate(ctx); err != nil {
		return nil, err
	}
	resp, err := c.sc.Request(ctx, http.MethodGet, c.sc.ServiceURL(path),
		&gophercloud.RequestOpts{OkCodes: []int{http.StatusOK}, KeepResponseBody: true})
	if err != nil {
		return nil, fmt.Errorf("GET /v1/%s: %w", path, apiError(err))
	}
	return resp, nil
}
