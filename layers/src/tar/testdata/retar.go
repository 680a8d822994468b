// Re-encodes a tar read from stdin with Go's archive/tar, setting Format=PAX as containerd's
// archive writer does; rbuild's layer tars must come out byte-identical.
package main

import (
	"archive/tar"
	"io"
	"os"
	"strings"
)

func main() {
	r := tar.NewReader(os.Stdin)
	w := tar.NewWriter(os.Stdout)
	for {
		hdr, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		recs := map[string]string{}
		for k, v := range hdr.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				recs[k] = v
			}
		}
		hdr.PAXRecords = recs
		hdr.Xattrs = nil
		hdr.Format = tar.FormatPAX
		if err := w.WriteHeader(hdr); err != nil {
			panic(err)
		}
		if _, err := io.Copy(w, r); err != nil {
			panic(err)
		}
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
}
