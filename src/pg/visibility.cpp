// Which leads a reader may see: those it may see in the model's lead table, under that table's row-level
// security policies. The views over leadscore's per-lead tables (states, stage history, resets, RFM,
// snapshots) are security_barrier views that keep the rows for which _may_read holds; the C readers
// (_hottest, explain, _eval at a past instant) ask may_read themselves. So every read path shows a role
// the leads of the CRM it may see, no others. (Not row-level security on leadscore's own tables: pg_dump
// dumps an extension table's policies, and a restore would then fail on the ones the extension creates.)
#include "state.h"
#include "../core/key_text.h"

extern "C" {
#include "utils/acl.h"
#include "utils/rls.h"
}

#include <string>
#include <unordered_set>

using namespace leadscore;
using namespace leadscore::pg;

namespace {

enum class Seen { All, None, Some };

// What one role may see of one model, for the length of one query (one call site's fn_extra).
struct ModelView {
	int model_id;
	Seen mode;
	std::unordered_set<std::string> keys; // Some: the lead keys (their bytes) it sees in the lead table
};

struct Visibility {
	Oid user = InvalidOid;
	std::vector<ModelView> models;
	std::string scratch;
};

// The bytes of a key of the model's kind, from a Datum of the state table's key type.
void key_bytes(KeyKind kind, Datum key, std::string *out)
{
	switch (kind) {
	case KeyKind::Int4: {
		int32 v = DatumGetInt32(key);
		out->assign(reinterpret_cast<const char *>(&v), sizeof(v));
		break;
	}
	case KeyKind::Int8: {
		int64 v = DatumGetInt64(key);
		out->assign(reinterpret_cast<const char *>(&v), sizeof(v));
		break;
	}
	case KeyKind::Uuid:
		out->assign(reinterpret_cast<const char *>(DatumGetUUIDP(key)->data), UUID_LEN);
		break;
	default: {
		text *t = DatumGetTextPP(key);
		out->assign(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
		break;
	}
	}
}

const char *table_name(Oid relid)
{
	return DatumGetCString(DirectFunctionCall1(regclassout, ObjectIdGetDatum(relid)));
}

} // namespace

namespace leadscore::pg {

// Whether the user may read the lead key column of the model's lead table.
static bool may_read_table(const CachedModel &model, const Cache *cache, Oid user)
{
	if (model.lead_table < 0)
		return false;
	const TrackedTable &t = cache->tables[model.lead_table];
	return pg_class_aclcheck(t.relid, user, ACL_SELECT) == ACLCHECK_OK ||
	       pg_attribute_aclcheck(t.relid, t.key_attno, user, ACL_SELECT) == ACLCHECK_OK;
}

void check_read(const Cache *cache, const CachedModel &model)
{
	// A model that tracks no lead table has no lead to read.
	if (model.lead_table < 0 || may_read_table(model, cache, GetUserId()))
		return;
	const TrackedTable &t = cache->tables[model.lead_table];
	ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
	                errmsg("permission denied for the leads of model \"%s\"", model.spec.name.c_str()),
	                errdetail("Reading scores of a model needs SELECT on column \"%s\" of its lead table %s.",
	                          t.key_column.c_str(), table_name(t.relid))));
}

// The view of model_id for vis->user, computed at its first use in this call site.
static ModelView *model_view(Visibility *vis, const Cache *cache, int model_id)
{
	Oid reader = vis->user;
	for (ModelView &v : vis->models)
		if (v.model_id == model_id)
			return &v;
	const CachedModel *model = cache->model_by_id(model_id);
	Seen mode = Seen::None;
	if (model && may_read_table(*model, cache, reader)) {
		Oid relid = cache->tables[model->lead_table].relid;
		mode = check_enable_rls(relid, reader, true) == RLS_ENABLED ? Seen::Some : Seen::All;
	}
	ModelView *view = nullptr;
	ls_cpp([&] {
		vis->models.push_back(ModelView{model_id, mode, {}});
		view = &vis->models.back();
	});
	if (mode != Seen::Some)
		return view;
	// The keys the reader sees, read as the reader (its policies apply), names in pg_catalog alone (we may be
	// running as the extension's owner: _hottest).
	const TrackedTable &t = cache->tables[model->lead_table];
	RoleSwitch saved;
	as_role(reader, &saved);
	spi_connect();
	char *sql = psprintf("SELECT %s::%s FROM %s WHERE %s IS NOT NULL", quote_identifier(t.key_column.c_str()),
	                     format_type_be(key_type(model->key).type), t.name.c_str(),
	                     quote_identifier(t.key_column.c_str()));
	if (SPI_execute(sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read the leads of %s", t.name.c_str());
	for (uint64 r = 0; r < SPI_processed; r++) {
		bool isnull;
		Datum key = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull);
		if (isnull)
			continue;
		ls_cpp([&] {
			key_bytes(model->key, key, &vis->scratch);
			view->keys.insert(vis->scratch);
		});
	}
	SPI_finish();
	end_as_role(&saved);
	return view;
}

static Visibility *visibility(void **extra, MemoryContext cxt, Oid reader)
{
	Visibility *vis = static_cast<Visibility *>(*extra);
	// A call site stays with one reader; should it change (SET ROLE between fetches), start again.
	if (vis && vis->user == reader)
		return vis;
	vis = ls_owned<Visibility>(cxt);
	vis->user = reader;
	*extra = vis;
	return vis;
}

bool may_read(void **extra, MemoryContext cxt, const Cache *cache, int model_id, Datum key, Oid reader)
{
	Visibility *vis = visibility(extra, cxt, reader);
	ModelView *view = model_view(vis, cache, model_id);
	if (view->mode != Seen::Some)
		return view->mode == Seen::All;
	const CachedModel *model = cache->model_by_id(model_id);
	bool found = false;
	ls_cpp([&] {
		key_bytes(model->key, key, &vis->scratch);
		found = view->keys.count(vis->scratch) > 0;
	});
	return found;
}

// Whether a lead key written as text reads as a key of `kind`: a text that does not cannot name one of the
// model's leads (a snapshot's lead of a model since tracked with another key type), and must not make the
// input function raise an error in the filter of a view, which would fail the whole query.
static bool key_text_fits(KeyKind kind, const char *text)
{
	switch (kind) {
	case KeyKind::Int4:
		return core::int_key_text_ok(text, 32);
	case KeyKind::Int8:
		return core::int_key_text_ok(text, 64);
	case KeyKind::Uuid:
		return core::uuid_key_text_ok(text);
	default:
		return true;
	}
}

// A lead key written as text (a snapshot's lead column) read as a key of `kind` into *key; false when it
// is not one (see key_text_fits).
bool text_as_key(KeyKind kind, Datum value, Datum *key)
{
	char *s = TextDatumGetCString(value);
	if (!key_text_fits(kind, s))
		return false;
	Oid input, ioparam;
	getTypeInputInfo(key_type(kind).type, &input, &ioparam);
	*key = OidInputFunctionCall(input, s, ioparam, -1);
	return true;
}

} // namespace leadscore::pg

extern "C" {

// _may_read(model_id, lead): the filter of the views over the per-lead tables keyed by the lead's own type.
LS_FUNCTION(leadscore_may_read);
Datum leadscore_may_read(PG_FUNCTION_ARGS)
{
	const Cache *cache = get_cache();
	int model_id = PG_GETARG_INT32(0);
	const CachedModel *model = cache->model_by_id(model_id);
	if (!model) {
		refuse_unconfigured_node(cache);
		PG_RETURN_BOOL(false);
	}
	Oid argtype = get_fn_expr_argtype(fcinfo->flinfo, 1);
	Datum key = PG_GETARG_DATUM(1);
	if (argtype != key_type(model->key).type) {
		// A text key of another model (a snapshot's lead column): read it as the model's key type.
		if (argtype != TEXTOID || !text_as_key(model->key, key, &key))
			PG_RETURN_BOOL(false);
	}
	PG_RETURN_BOOL(may_read(&fcinfo->flinfo->fn_extra, fcinfo->flinfo->fn_mcxt, cache, model_id, key, GetUserId()));
}

// _may_read_state(state_id, lead): the same for a state row, whose model_id is its model's state_id.
LS_FUNCTION(leadscore_may_read_state);
Datum leadscore_may_read_state(PG_FUNCTION_ARGS)
{
	const Cache *cache = get_cache();
	const CachedModel *model = cache->model_by_state(PG_GETARG_INT32(0));
	if (!model) {
		refuse_unconfigured_node(cache);
		PG_RETURN_BOOL(false);
	}
	if (get_fn_expr_argtype(fcinfo->flinfo, 1) != key_type(model->key).type)
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(may_read(&fcinfo->flinfo->fn_extra, fcinfo->flinfo->fn_mcxt, cache, model->spec.id,
	                        PG_GETARG_DATUM(1), GetUserId()));
}

// _may_read_named(model, lead): the same by model name and text key (score_snapshot).
LS_FUNCTION(leadscore_may_read_named);
Datum leadscore_may_read_named(PG_FUNCTION_ARGS)
{
	const Cache *cache = get_cache();
	char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	const CachedModel *model = cache->model_by_name(name);
	if (!model)
		PG_RETURN_BOOL(false);
	Datum key = PG_GETARG_DATUM(1);
	if (model->key != KeyKind::Text && !text_as_key(model->key, key, &key))
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(
		may_read(&fcinfo->flinfo->fn_extra, fcinfo->flinfo->fn_mcxt, cache, model->spec.id, key, GetUserId()));
}

// _check_read(model): a clear permission error for a role that may not read the model's leads.
LS_FUNCTION(leadscore_check_read);
Datum leadscore_check_read(PG_FUNCTION_ARGS)
{
	const Cache *cache = get_cache();
	char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	check_read(cache, *known_model(cache, name));
	PG_RETURN_VOID();
}

} // extern "C"
