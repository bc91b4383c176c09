// Predictive models for the rest of the glue (e.g. the rule engine using a prediction inside a score).
//
//     double p = leadscore::pg::predict_probability("churn", tuple, desc, &log_odds);
//
// - model: the name of a model trained by leadscore.train; its latest version is used.
// - tuple, desc: a row holding (at least) every feature column of the model, matched by column name; the
//   columns may be in any order and the row may have other columns. A trigger's tuple and
//   RelationGetDescr(rel) will do, as will a slot's heap tuple and the slot's descriptor.
// - Returns the probability of conversion in [0, 1]; log_odds, if not null, receives its log-odds.
//
// PostgreSQL side: call it from a PostgreSQL frame (never from inside C++ code with live destructors, nor
// inside ls_cpp). It raises an ERROR (ereport) when the model does not exist, the row lacks a feature column
// or has one of an incompatible type, or a value is not finite; it never throws.
//
// Caching: the compiled model is cached per backend (C++ heap, outside memory contexts) and dropped when
// leadscore.predictive_model or leadscore.predictive_term change (a relcache invalidation, sent by their
// triggers: at once in the writing session, at commit elsewhere). The first call after a change reads the
// model with SPI (SPI_connect/SPI_finish nested inside the caller's SPI connection if any) under the latest
// snapshot, as catalog caches do (a parallel worker: the active one), so the caller must be inside a
// transaction and allowed to read those tables (everyone is). The column binding (feature
// to attribute number) is cached per model and checked against desc on every call (name and type), so an
// ALTER TABLE between calls is safe. Values are decoded in a private memory context reset on every call:
// nothing grows with the number of calls. No lock is taken beyond the AccessShareLock of reading the model.
#pragma once

#include "../pg.h"

namespace leadscore::pg {

double predict_probability(const char *model, HeapTuple tuple, TupleDesc desc, double *log_odds = nullptr);

// Drops every cached predictive model (the invalidation callback does it; exposed for tests and tools).
void invalidate_predictive_models();

} // namespace leadscore::pg
