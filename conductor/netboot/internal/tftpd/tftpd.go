// Package tftpd is the boot services' TFTP server on github.com/pin/tftp:
// read-only (write requests are refused) and serving only the regular
// files of one bootfiles.Dir.
package tftpd

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/rivetmetal/rivet/conductor/netboot/internal/bootfiles"
)

// Server serves one directory over TFTP.
type Server struct {
	files *bootfiles.Dir
	srv   *tftp.Server
	log   *slog.Logger
}

// New returns a server for files.
func New(files *bootfiles.Dir, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{files: files, log: log}
	// No write handler: pin/tftp answers write requests with an error
	// packet.
	s.srv = tftp.NewServer(s.read, nil)
	s.srv.SetTimeout(5 * time.Second)
	s.srv.SetRetries(5)
	return s
}

// Serve serves on conn until Shutdown.
func (s *Server) Serve(conn net.PacketConn) error {
	if err := s.srv.Serve(conn); err != nil {
		return fmt.Errorf("tftp: %w", err)
	}
	return nil
}

// Shutdown stops serving and waits for the transfers in flight.
func (s *Server) Shutdown() { s.srv.Shutdown() }

func (s *Server) read(name string, rf io.ReaderFrom) error {
	peer := ""
	ot, isOut := rf.(tftp.OutgoingTransfer)
	if isOut {
		a := ot.RemoteAddr()
		peer = a.String()
	}
	f, err := s.files.Open(name)
	if err != nil {
		s.log.Warn("tftp read refused", "path", name, "peer", peer, "error", err)
		return err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && isOut {
		ot.SetSize(st.Size())
	}
	start := time.Now()
	n, err := rf.ReadFrom(f)
	if err != nil {
		s.log.Warn("tftp transfer failed", "path", name, "peer", peer, "bytes", n, "error", err)
		return err
	}
	s.log.Info("tftp served", "path", name, "peer", peer, "bytes", n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}
