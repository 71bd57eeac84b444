//go:build race

package main

// raceBuild makes the end-to-end tests build the binary under test with -race too.
const raceBuild = true
