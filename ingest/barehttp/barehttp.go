// Package barehttp is the bare HTTP handler: what flashsale's purchase handler does before it asks
// Redis, on net/http's ServeMux, with a constant sold-out reply. `loadtest bare` serves it as
// the machine's HTTP ceiling, and ingest's HTTP path benchmark runs beside it.
package barehttp

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/flashsale/flashsale/ingest"
)

// reply is flashsale's purchase reply shape.
type reply struct {
	Success bool   `json:"success"`
	Message string `json:"message"`
}

// Handler does what flashsale's purchase handler does before it asks Redis (read the body
// under the same size limit, decode it with ingest.DecodePurchase, validate it) and answers
// 410 sold out, encoding the reply the same way. GET /health answers 200.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/purchase", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, ingest.MaxBodyBytes))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				write(w, http.StatusRequestEntityTooLarge, "request body too large")
				return
			}
			write(w, http.StatusBadRequest, "invalid request body")
			return
		}
		req, err := ingest.DecodePurchase(body)
		if err != nil {
			write(w, http.StatusBadRequest, err.Error())
			return
		}
		if err := req.Validate(); err != nil {
			write(w, http.StatusBadRequest, err.Error())
			return
		}
		write(w, http.StatusGone, "sold out")
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		write(w, http.StatusOK, "ok")
	})
	return mux
}

func write(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(reply{Success: status == http.StatusOK, Message: msg})
}
