// Package wire holds the JSON shapes of the REST API (v1) and its protocol
// constants: the contract between the server (package api) and its Go client
// (package api/client). It imports nothing of the server, so a client links
// neither gin nor the WAL.
package wire
