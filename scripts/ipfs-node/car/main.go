// Command car is the project's independent CAR checker, built with the Kubo test node from the
// same pinned module: go-car's own `cmd/car` module is not served by the Go module proxy these
// machines reach, so this is a small front end over go-car's library (github.com/ipld/go-car/v2,
// the version Kubo itself links), with the semantics of go-car's `car verify`: every section is
// read with the library's default limits (8 MiB sections), every block is re-hashed against its
// CID by the library's reader, and every root must be present as a block. It walks no links: the
// project's verify-car does that; this is the second opinion on the bytes.
//
//	car verify FILE   exit 0 and one line "ok: N blocks, R roots, B bytes" on stdout, else exit 1
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ipfs/go-cid"
	carv2 "github.com/ipld/go-car/v2"
	_ "github.com/multiformats/go-multihash/register/all"
)

func main() {
	if len(os.Args) != 3 || os.Args[1] != "verify" {
		fmt.Fprintln(os.Stderr, "usage: car verify FILE")
		os.Exit(2)
	}
	if err := verify(os.Args[2]); err != nil {
		fmt.Fprintf(os.Stderr, "car verify %s: %v\n", os.Args[2], err)
		os.Exit(1)
	}
}

func verify(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// The block reader unwraps CARv2 and re-hashes every block (TrustedCAR is off by default).
	br, err := carv2.NewBlockReader(f)
	if err != nil {
		return fmt.Errorf("header: %w", err)
	}
	if len(br.Roots) == 0 {
		return errors.New("no roots")
	}
	want := make(map[cid.Cid]bool, len(br.Roots))
	for _, r := range br.Roots {
		want[r] = false
	}
	var blocks, bytes int64
	for {
		blk, err := br.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("block %d: %w", blocks, err)
		}
		if _, ok := want[blk.Cid()]; ok {
			want[blk.Cid()] = true
		}
		blocks++
		bytes += int64(len(blk.RawData()))
	}
	for r, seen := range want {
		if !seen {
			return fmt.Errorf("root %s is not in the file", r)
		}
	}
	fmt.Printf("ok: %d blocks, %d roots, %d bytes\n", blocks, len(br.Roots), bytes)
	return nil
}
