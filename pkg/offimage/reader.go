package offimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
)

// Opener fetches bytes [from, to) of a blob (Registry.Open).
type Opener interface {
	Open(ctx context.Context, b *Blob, from, to int64) (io.ReadCloser, error)
}

// Reader reads a plan's archive, fetching each blob as it is reached. It
// is an io.ReadSeeker: a Seek, or the first Read, at any offset fetches
// only what is needed from there (http.ServeContent answers Range
// requests with it).
//
// A blob read from its start to its end is checked against its digest: on
// a mismatch the Read that would finish it fails, without the blob's last
// bytes, so the archive is cut short rather than wrong. A blob entered
// part-way is fetched from its start when at most VerifyPrefix bytes
// precede the offset (they are hashed, not returned), so it is checked
// too; beyond that only the part asked for is fetched, and Unverified is
// told (the loaders check every layer against its image when they load).
type Reader struct {
	Ctx  context.Context
	Plan *Plan
	Src  Opener
	// VerifyPrefix bounds what is fetched and discarded to check a blob
	// entered part-way (-1: always fetch from the start).
	VerifyPrefix int64
	// Unverified, when set, is told of a blob sent only in part, unchecked.
	Unverified func(b *Blob, from, to int64)
	// Progress, when set, is told of each read: the offset reached and
	// the layer it is in (0: not in a layer).
	Progress func(off int64, layer int)

	pos  int64
	cur  io.ReadCloser // the open blob stream, at pos
	sum  hash.Hash     // checking cur's blob, when fetched from its start
	blob *Blob
	err  error // the last failure
}

// Err is the last failure of a Read (nil when none).
func (r *Reader) Err() error { return r.err }

// Seek implements io.Seeker.
func (r *Reader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += r.pos
	case io.SeekEnd:
		off += r.Plan.Size
	default:
		return 0, errors.New("bad whence")
	}
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off != r.pos {
		r.closeBlob()
		r.pos = off
	}
	return off, nil
}

// Close ends a blob fetch under way.
func (r *Reader) Close() error {
	r.closeBlob()
	return nil
}

func (r *Reader) closeBlob() {
	if r.cur != nil {
		r.cur.Close()
		r.cur, r.sum, r.blob = nil, nil, nil
	}
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	n, err := r.read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

func (r *Reader) read(p []byte) (int, error) {
	if r.pos >= r.Plan.Size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	part := r.Plan.Parts[r.Plan.Find(r.pos)]
	end := part.Off + part.Len
	if int64(len(p)) > end-r.pos {
		p = p[:end-r.pos]
	}
	if part.Blob == nil {
		n := copy(p, part.Data[r.pos-part.Off:])
		r.pos += int64(n)
		r.progress(0)
		return n, nil
	}
	if r.cur == nil {
		if err := r.openBlob(part); err != nil {
			return 0, err
		}
	}
	n, err := io.ReadFull(r.cur, p)
	if r.sum != nil {
		r.sum.Write(p[:n])
	}
	if err != nil && !(errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) || n < len(p) {
		r.closeBlob()
		if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("blob %s ended early", part.Blob.Digest)
		}
		return 0, err
	}
	if r.pos+int64(n) == end {
		if r.sum != nil {
			if got := hex.EncodeToString(r.sum.Sum(nil)); got != part.Blob.Digest.Hex {
				r.closeBlob()
				return 0, fmt.Errorf("%w: layer blob %s of %s arrived as sha256:%s; the archive is cut here", ErrDigest, part.Blob.Digest, part.Blob.Repo, got)
			}
		}
		r.closeBlob()
	}
	r.pos += int64(n)
	r.progress(part.Blob.Layer)
	return n, nil
}

func (r *Reader) progress(layer int) {
	if r.Progress != nil {
		r.Progress(r.pos, layer)
	}
}

// openBlob starts fetching the blob of part at r.pos.
func (r *Reader) openBlob(part Part) error {
	b := part.Blob
	from := r.pos - part.Off
	fetchFrom := from
	if from > 0 && (r.VerifyPrefix < 0 || from <= r.VerifyPrefix) {
		fetchFrom = 0
	}
	ctx := r.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	rc, err := r.Src.Open(ctx, b, fetchFrom, b.Size)
	if err != nil {
		return err
	}
	r.cur, r.blob = rc, b
	if fetchFrom == 0 {
		r.sum = sha256.New()
		if from > 0 {
			if _, err := io.CopyN(r.sum, rc, from); err != nil {
				r.closeBlob()
				return fmt.Errorf("fetching blob %s: %w", b.Digest, err)
			}
		}
	} else if r.Unverified != nil {
		r.Unverified(b, from, b.Size)
	}
	return nil
}
