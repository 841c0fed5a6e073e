package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// httpTarget talks to flashsale's HTTP API over keep-alive connections, one per client.
type httpTarget struct {
	base      string // http://host:port
	client    *http.Client
	transport *http.Transport
}

func newHTTPTarget(addr string, clients int) *httpTarget {
	tr := &http.Transport{
		DialContext: (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		// Every client keeps its own connection between requests: no dial per request.
		MaxIdleConns:        clients,
		MaxIdleConnsPerHost: clients,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &httpTarget{base: "http://" + addr, client: &http.Client{Transport: tr}, transport: tr}
}

// purchaseBody builds the JSON body by hand: request and user IDs are the generator's own
// (letters, digits and '-'), the item passed ValidateItemID, so nothing needs escaping.
func purchaseBody(buf []byte, p purchase) []byte {
	buf = append(buf[:0], `{"request_id":"`...)
	buf = append(buf, p.requestID...)
	buf = append(buf, `","user_id":"`...)
	buf = append(buf, p.userID...)
	buf = append(buf, `","item_id":"`...)
	buf = append(buf, p.item...)
	buf = append(buf, `","quantity":`...)
	buf = strconv.AppendInt(buf, int64(p.quantity), 10)
	return append(buf, '}')
}

func (h *httpTarget) purchase(ctx context.Context, _ int, p purchase) (outcome, string) {
	body := purchaseBody(make([]byte, 0, 128), p)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.base+"/api/purchase", bytes.NewReader(body))
	if err != nil {
		return outTransport, ""
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return outTransport, ""
	}
	reply, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if err != nil {
		return outTransport, ""
	}
	o := classifyHTTP(resp.StatusCode, reply)
	if o != outOK {
		return o, ""
	}
	var r struct {
		OrderID string `json:"order_id"`
	}
	json.Unmarshal(reply, &r)
	return o, r.OrderID
}

func (h *httpTarget) pay(ctx context.Context, _ int, orderID, user, ref string) payOutcome {
	body, _ := json.Marshal(map[string]string{"payment_ref": ref, "user_id": user})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.base+"/api/orders/"+url.PathEscape(orderID)+"/pay", bytes.NewReader(body))
	if err != nil {
		return payAmbiguous
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return payAmbiguous
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		return payOK
	case resp.StatusCode == http.StatusGone:
		return payLate
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return payRefused
	}
	return payAmbiguous
}

// classifyHTTP maps a purchase reply to an outcome; a 403 tells the per-user limit from the
// sale window by its message.
func classifyHTTP(status int, body []byte) outcome {
	switch status {
	case http.StatusOK:
		if bytes.Contains(body, []byte(`"success":true`)) {
			return outOK
		}
		return outOther
	case http.StatusGone:
		return outSoldOut
	case http.StatusConflict:
		return outDuplicate
	case http.StatusForbidden:
		if bytes.Contains(body, []byte("limit")) {
			return outLimit
		}
		return outClosed
	case http.StatusNotFound:
		return outNotFound
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return outBadRequest
	case http.StatusServiceUnavailable:
		return outUnavailable
	}
	return outOther
}

func (h *httpTarget) stock(ctx context.Context, item string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.base+"/api/items/"+url.PathEscape(item), nil)
	if err != nil {
		return 0, err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /api/items/%s: %s: %s", item, resp.Status, bytes.TrimSpace(body))
	}
	var it struct {
		Stock *int64 `json:"stock"`
	}
	if err := json.Unmarshal(body, &it); err != nil || it.Stock == nil {
		return 0, fmt.Errorf("GET /api/items/%s: no stock in %q", item, body)
	}
	return *it.Stock, nil
}

func (h *httpTarget) close() { h.transport.CloseIdleConnections() }
