package rediq

import "github.com/rediq/rediq/internal/broker"

// PurgeIndex is purgeIndex, for tests that change the index between pages.
var PurgeIndex = purgeIndex

// PurgePage is how many tasks one purge call deletes.
const PurgePage = purgePage

// Broker is the app's broker.
func (a *App) Broker() *broker.Broker { return a.core.Broker() }
