// Lead keys: the leads of one statement (or one recompute, one scheduled run), numbered in the order they
// are first seen. Integer keys go through core::IntKeyIndex, the others through a map of their bytes; the
// key Datums are kept, in that order, for the statements on the state tables.
#include "state.h"

namespace leadscore::pg {

void leads_init(Leads *leads, const Cache *cache, const CachedModel *model, MemoryContext cxt)
{
	leads->cache = cache;
	leads->model = model;
	leads->cxt = cxt;
	leads->batch = ls_owned<Batch>(cxt);
	leads->size = 64;
	leads->n = 0;
	leads->keys = static_cast<Datum *>(MemoryContextAlloc(cxt, leads->size * sizeof(Datum)));
	leads->ctids = nullptr;
	leads->direct = nullptr;
}

int lead_index(Leads *leads, Datum key)
{
	KeyKind kind = leads->model->key;
	int32 i4 = 0;
	int64 i8 = 0;
	const char *data;
	int len;

	switch (kind) {
	case KeyKind::Int4:
		i4 = DatumGetInt32(key);
		data = reinterpret_cast<const char *>(&i4);
		len = sizeof(i4);
		break;
	case KeyKind::Int8:
		i8 = DatumGetInt64(key);
		data = reinterpret_cast<const char *>(&i8);
		len = sizeof(i8);
		break;
	case KeyKind::Uuid:
		data = reinterpret_cast<const char *>(DatumGetUUIDP(key)->data);
		len = UUID_LEN;
		break;
	default: {
		text *t = DatumGetTextPP(key);
		data = VARDATA_ANY(t);
		len = VARSIZE_ANY_EXHDR(t);
		break;
	}
	}

	Batch *batch = leads->batch;
	const core::ModelSpec &spec = leads->model->spec;
	int index = -1;
	bool added = false;
	int next = leads->n;
	ls_cpp([&] {
		if (kind == KeyKind::Int4 || kind == KeyKind::Int8) {
			index = batch->int_ids.find_or_add(kind == KeyKind::Int4 ? i4 : i8, next);
			if (index != next)
				return;
		} else {
			// The scratch key keeps its buffer: a key seen before costs no allocation.
			batch->key.assign(data, len);
			auto seen = batch->ids.find(batch->key);
			if (seen != batch->ids.end()) {
				index = seen->second;
				return;
			}
			batch->ids.emplace(batch->key, next);
			index = next;
		}
		added = true;
		batch->states.emplace_back();
		batch->states.back().reset(spec);
		batch->rebuild.push_back(0);
		batch->old_stage.emplace_back();
		batch->next_change.emplace_back();
		batch->hot_key.emplace_back();
		batch->stage_at.emplace_back();
	});
	if (!added)
		return index;

	if (leads->n == leads->size) {
		leads->size *= 2;
		leads->keys = static_cast<Datum *>(repalloc(leads->keys, leads->size * sizeof(Datum)));
	}
	MemoryContext old = MemoryContextSwitchTo(leads->cxt);
	if (kind == KeyKind::Uuid)
		key = datumCopy(key, false, UUID_LEN);
	else if (kind == KeyKind::Text)
		key = PointerGetDatum(cstring_to_text_with_len(data, len));
	MemoryContextSwitchTo(old);
	leads->keys[leads->n++] = key;
	return index;
}

char *key_text(KeyKind kind, Datum key)
{
	Oid out;
	bool varlena;
	getTypeOutputInfo(key_type(kind).type, &out, &varlena);
	return OidOutputFunctionCall(out, key);
}

Datum key_array(Leads *leads, const int *which, int n)
{
	const KeyType &kt = key_type(leads->model->key);
	int16 typlen;
	bool byval;
	char align;
	get_typlenbyvalalign(kt.type, &typlen, &byval, &align);
	Datum *elems = static_cast<Datum *>(palloc(sizeof(Datum) * (n > 0 ? n : 1)));
	for (int i = 0; i < n; i++)
		elems[i] = leads->keys[which ? which[i] : i];
	return PointerGetDatum(construct_array(elems, n, kt.type, typlen, byval, align));
}

} // namespace leadscore::pg
