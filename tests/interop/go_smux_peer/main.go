// Command go_smux_peer speaks smux (the xtaci/smux library AWS's plugin and agent use) over its
// stdin/stdout, so OpenSSM's Python implementation can be tested against the reference one.
//
// Per-stream test protocol (the opener drives it):
//
//	opener   -> mode byte, 8-byte big-endian length N, N bytes of data
//	mode 'E' (echo):  acceptor echoes the data as it arrives, then sends sha256(data);
//	                  the opener checks both and closes; the acceptor reads EOF and closes.
//	mode 'H' (half-close, v1 only): the opener closes right after its data; the acceptor reads
//	                  to EOF, then sends sha256(data) and closes (writing after the peer's FIN).
//
// A stream that ends before its first byte counts as aborted, not failed (the opener may reset it).
//
// -mode server: accept streams until stdin ends; exit 1 if any stream failed.
// -mode client: open -streams streams at once (sizes cycle through -sizes), run mode 'E' on
// each, exit 1 if any failed.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xtaci/smux"
)

const maxTestSize = 64 << 20

var errAborted = errors.New("aborted before the header")

type stdio struct {
	io.Reader
	io.Writer
}

func (stdio) Close() error { return os.Stdout.Close() }

func readHeader(stream io.Reader) (byte, int, error) {
	var head [9]byte
	if n, err := io.ReadFull(stream, head[:]); err != nil {
		if n == 0 && err == io.EOF {
			return 0, 0, errAborted
		}
		return 0, 0, fmt.Errorf("reading header: %w", err)
	}
	size := binary.BigEndian.Uint64(head[1:])
	if size > maxTestSize {
		return 0, 0, fmt.Errorf("size %d too large", size)
	}
	return head[0], int(size), nil
}

func expectEOF(stream io.Reader) error {
	var one [1]byte
	n, err := stream.Read(one[:])
	if n != 0 || err != io.EOF {
		return fmt.Errorf("expected EOF, got %d bytes, err %v", n, err)
	}
	return nil
}

// serve answers one stream opened by the peer.
func serve(stream *smux.Stream) error {
	defer stream.Close()
	mode, size, err := readHeader(stream)
	if err != nil {
		return err
	}
	digest := sha256.New()
	buf := make([]byte, 16384)
	for remaining := size; remaining > 0; {
		chunk := buf
		if remaining < len(chunk) {
			chunk = chunk[:remaining]
		}
		n, err := stream.Read(chunk)
		if err != nil {
			return fmt.Errorf("reading data (%d left): %w", remaining, err)
		}
		digest.Write(chunk[:n])
		remaining -= n
		if mode == 'E' {
			if _, err := stream.Write(chunk[:n]); err != nil {
				return fmt.Errorf("echoing: %w", err)
			}
		}
	}
	switch mode {
	case 'E':
		if _, err := stream.Write(digest.Sum(nil)); err != nil {
			return fmt.Errorf("writing digest: %w", err)
		}
		return expectEOF(stream)
	case 'H':
		if err := expectEOF(stream); err != nil {
			return err
		}
		_, err := stream.Write(digest.Sum(nil))
		return err
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
}

// drive opens one stream and runs mode 'E' with size bytes of seeded random data.
func drive(session *smux.Session, size int, seed int64) error {
	stream, err := session.OpenStream()
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer stream.Close()
	data := make([]byte, size)
	rand.New(rand.NewSource(seed)).Read(data)
	writeErr := make(chan error, 1)
	go func() {
		var head [9]byte
		head[0] = 'E'
		binary.BigEndian.PutUint64(head[1:], uint64(size))
		_, err := stream.Write(append(head[:], data...))
		writeErr <- err
	}()
	echo := make([]byte, size+sha256.Size)
	if _, err := io.ReadFull(stream, echo); err != nil {
		return fmt.Errorf("stream %d: reading echo: %w", stream.ID(), err)
	}
	if err := <-writeErr; err != nil {
		return fmt.Errorf("stream %d: writing: %w", stream.ID(), err)
	}
	if !bytes.Equal(echo[:size], data) {
		return fmt.Errorf("stream %d: echo differs", stream.ID())
	}
	want := sha256.Sum256(data)
	if !bytes.Equal(echo[size:], want[:]) {
		return fmt.Errorf("stream %d: digest differs", stream.ID())
	}
	return nil
}

func parseSizes(text string) ([]int, error) {
	var sizes []int
	for _, part := range strings.Split(text, ",") {
		size, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || size < 0 || size > maxTestSize {
			return nil, fmt.Errorf("bad size %q", part)
		}
		sizes = append(sizes, size)
	}
	return sizes, nil
}

func main() {
	mode := flag.String("mode", "server", "server or client")
	version := flag.Int("version", 1, "smux protocol version (1 or 2)")
	streams := flag.Int("streams", 24, "client: streams opened at once")
	sizesText := flag.String("sizes", "0,1,1000,32768,32769,100000,300000", "client: data sizes (cycled)")
	keepaliveMs := flag.Int("keepalive-ms", 0, "send NOP at this interval (0: keepalive disabled)")
	flag.Parse()

	config := smux.DefaultConfig()
	config.Version = *version
	if *keepaliveMs > 0 {
		config.KeepAliveInterval = time.Duration(*keepaliveMs) * time.Millisecond
		config.KeepAliveTimeout = time.Hour
	} else {
		config.KeepAliveDisabled = true
	}
	conn := stdio{os.Stdin, os.Stdout}
	var failures, aborted int32

	switch *mode {
	case "server":
		session, err := smux.Server(conn, config)
		if err != nil {
			fmt.Fprintln(os.Stderr, "FAIL server:", err)
			os.Exit(2)
		}
		var wait sync.WaitGroup
		served := 0
		for {
			stream, err := session.AcceptStream()
			if err != nil {
				break
			}
			served++
			wait.Add(1)
			go func() {
				defer wait.Done()
				if err := serve(stream); errors.Is(err, errAborted) {
					atomic.AddInt32(&aborted, 1)
				} else if err != nil {
					atomic.AddInt32(&failures, 1)
					fmt.Fprintf(os.Stderr, "FAIL stream %d: %v\n", stream.ID(), err)
				}
			}()
		}
		wait.Wait()
		fmt.Fprintf(os.Stderr, "served %d streams, %d failed, %d aborted\n", served, failures, aborted)
	case "client":
		sizes, err := parseSizes(*sizesText)
		if err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			os.Exit(2)
		}
		session, err := smux.Client(conn, config)
		if err != nil {
			fmt.Fprintln(os.Stderr, "FAIL client:", err)
			os.Exit(2)
		}
		var wait sync.WaitGroup
		for i := 0; i < *streams; i++ {
			wait.Add(1)
			go func(i int) {
				defer wait.Done()
				if err := drive(session, sizes[i%len(sizes)], int64(i)); err != nil {
					atomic.AddInt32(&failures, 1)
					fmt.Fprintln(os.Stderr, "FAIL", err)
				}
			}(i)
		}
		wait.Wait()
		fmt.Fprintf(os.Stderr, "drove %d streams, %d failed\n", *streams, failures)
		session.Close()
	default:
		fmt.Fprintln(os.Stderr, "FAIL: unknown mode", *mode)
		os.Exit(2)
	}
	if failures > 0 {
		os.Exit(1)
	}
}
