package main

// The demo's forward door checks: requests through the proxy URLs, and the refusals.

import (
	"bufio"
	gotls "crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// expect sends one request through the proxy with Go's client and prints whether it got the
// wanted status and body.
func (d *demo) expect(title, proxyURL, target, wantBody string) {
	pu, _ := url.Parse(proxyURL)
	pu.User = url.UserPassword(demoUser, demoKey)
	tr := &http.Transport{
		Proxy:           http.ProxyURL(pu),
		TLSClientConfig: &gotls.Config{RootCAs: d.roots},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	status, body := 0, ""
	resp, err := client.Get(target)
	if err != nil {
		body = err.Error()
	} else {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		status, body = resp.StatusCode, strings.TrimSpace(string(b))
	}
	d.report(title, proxyURL, status, body, status == http.StatusOK && strings.Contains(body, wantBody))
}

// expectRefused sends a CONNECT by hand, so the demo can show the one-line reason the proxy
// gives (Go's client drops the body of a refused CONNECT).
func (d *demo) expectRefused(title, proxyURL string, withCreds bool, hostport string, wantStatus int, wantBody string) {
	pu, _ := url.Parse(proxyURL)
	status, body := 0, ""
	func() {
		conn, err := net.DialTimeout("tcp", pu.Host, 5*time.Second)
		if err != nil {
			body = err.Error()
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		var c net.Conn = conn
		if pu.Scheme == "https" {
			c = gotls.Client(conn, &gotls.Config{RootCAs: d.roots, ServerName: pu.Hostname()})
		}
		req := fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %s\r\n", hostport, hostport)
		if withCreds {
			req += "Proxy-Authorization: Basic " + basicAuth(demoUser, demoKey) + "\r\n"
		}
		if _, err := io.WriteString(c, req+"\r\n"); err != nil {
			body = err.Error()
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
		if err != nil {
			body = err.Error()
			return
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		status, body = resp.StatusCode, strings.TrimSpace(string(b))
	}()
	d.report(title, proxyURL, status, body, status == wantStatus && strings.Contains(body, wantBody))
}

func (d *demo) report(title, proxyURL string, status int, body string, ok bool) {
	via := "http:// "
	if strings.HasPrefix(proxyURL, "https") {
		via = "https://"
	}
	d.check(ok, "%-40s via %s proxy → %d  %s", title, via, status, firstLine(body))
}
