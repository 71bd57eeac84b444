// Command go is the Go client of the fixedgate client matrix; the part between the snippet
// markers is the README's Go example.
package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"
)

func main() {
	client := http.DefaultClient // http.ProxyFromEnvironment: HTTPS_PROXY, NO_PROXY
	if os.Getenv("FIXEDGATE_PROXY") != "" {
		client = explicitProxy()
	}
	client.Timeout = 30 * time.Second
	resp, err := client.Get(os.Getenv("TARGET_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(b))
}

func explicitProxy() *http.Client {
	// snippet start
	// FIXEDGATE_PROXY=http://acme-corp:KEY@proxy.example.com:3128
	proxyURL, err := url.Parse(os.Getenv("FIXEDGATE_PROXY"))
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	// snippet end
	return client
}
