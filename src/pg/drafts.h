// Drafts of models (drafts.cpp): a draft is a copy of a live model's configuration; leadscore.draft makes
// it, leadscore.preview scores it without writing, leadscore.publish puts it live.
#pragma once

#include "pg.h"

namespace leadscore::pg {

// While leadscore.draft or leadscore.publish copies a configuration: the model it copies from, else NULL.
// A rule row written then that repeats a rule of that model (name, source, condition and author) keeps
// its author (check_rule): a copy runs each condition with the rights of the role that wrote it.
const char *copying_from();

struct Leads;
// A live model's writer: while publish_concurrently builds a draft of the model, the leads it touched are
// noted (leadscore.draft_touch_<key>), to be built again. Needs an SPI connection.
void note_touched(const Leads *leads);

} // namespace leadscore::pg
