// Package charttest holds the tests of the Helm chart in ../badge-bridge: they load, lint and
// render it with the Helm SDK and check the rendered objects, decoded strictly into their
// Kubernetes types. A module of its own, so that the service's go.mod stays free of Helm.
package charttest
