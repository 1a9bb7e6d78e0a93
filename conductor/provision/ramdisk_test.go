package provision

import (
	"encoding/json"
	"regexp"
	"testing"

	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
	"github.com/rivetmetal/rivet/wire"
)

func TestTokens(t *testing.T) {
	tok, err := newToken()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`).MatchString(tok) {
		t.Fatalf("token %q is not 43 URL-safe characters", tok)
	}
	info := &internalinfo.Info{Agent: internalinfo.Agent{Token: tok}}
	if !tokenValid(info, tok) || tokenValid(info, tok[:42]) || tokenValid(info, "") {
		t.Fatal("token comparison wrong")
	}
	if tokenValid(&internalinfo.Info{Agent: internalinfo.Agent{Token: wire.Masked}}, wire.Masked) {
		t.Fatal("masked token accepted")
	}
	if tokenValid(&internalinfo.Info{}, "") {
		t.Fatal("missing token accepted")
	}
}

func TestFreshlyBootedAndProgress(t *testing.T) {
	l := &wire.CommandList{}
	if !freshlyBooted(l) {
		t.Error("empty list is freshly booted")
	}
	l.Commands = append(l.Commands, wire.CommandResult{CommandName: "get_deploy_steps", CommandStatus: wire.StatusSucceeded},
		wire.CommandResult{CommandName: "get_service_steps", CommandStatus: wire.StatusSucceeded})
	if !freshlyBooted(l) {
		t.Error("get_*_steps only is freshly booted")
	}
	l.Commands = append(l.Commands, wire.CommandResult{CommandName: "execute_deploy_step", CommandStatus: wire.StatusRunning,
		CommandResult: json.RawMessage(`{"progress":{"phase":"write","bytes_written":42,"total_bytes":100}}`)})
	if freshlyBooted(l) {
		t.Error("a running write is not freshly booted")
	}
	deploy := &kind{wire: wire.DeployStepKind}
	if p := progressOf(deploy, l.Last()); p == nil || p.BytesWritten != 42 || p.TotalBytes != 100 {
		t.Errorf("running progress = %+v", p)
	}
	done := wire.CommandResult{CommandResult: json.RawMessage(`{"deploy_result":{"result":"ok","progress":{"bytes_written":100}},"deploy_step":{"step":"write_image","interface":"deploy"}}`)}
	if p := progressOf(deploy, &done); p == nil || p.BytesWritten != 100 {
		t.Errorf("final progress = %+v", p)
	}
	if p := progressOf(deploy, &wire.CommandResult{}); p != nil {
		t.Errorf("null result progress = %+v", p)
	}
}
