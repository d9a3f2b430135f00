/* The worker's set of revoked task ids, bounded in size and age like
 * Celery's LimitedSet(maxlen=50000, expires=10800). Internal.
 *
 * Every `now` argument is a time in seconds that the caller supplies (the
 * worker passes cel__monotonic()). It is stored as the time an id was
 * added, and an id expires once added_at + expires_seconds <= now, as in
 * LimitedSet.purge. Each call first drops the expired ids, oldest first.
 *
 * A set is not thread-safe: callers serialize every call on one set. */
#ifndef CELERIAC_LIB_REVOKED_H
#define CELERIAC_LIB_REVOKED_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "internal.h"

typedef struct cel__revoked cel__revoked_t;

/* Creates an empty set that keeps at most max_entries ids (0: no limit) for
 * expires_seconds each (0 or less: ids never expire). Returns NULL when
 * memory runs out. The caller frees the set with cel__revoked_free. */
cel__revoked_t *cel__revoked_new(size_t max_entries, double expires_seconds);

/* Frees the set and every id in it. cel__revoked_free(NULL) does nothing. */
void cel__revoked_free(cel__revoked_t *set);

/* Adds a copy of task_id with the time `now`. Adding an id that is already
 * present moves it to the newest position with the new time. When the set
 * then contains more than max_entries ids, the oldest are dropped. Returns
 * CEL_OK, CEL_EINVAL for a NULL task_id, or CEL_ENOMEM. */
int cel__revoked_add(cel__revoked_t *set, const char *task_id, double now);

/* True when task_id is in the set and has not expired at `now`. */
bool cel__revoked_contains(cel__revoked_t *set, const char *task_id,
                           double now);

/* The number of ids that have not expired at `now`. */
size_t cel__revoked_count(cel__revoked_t *set, double now);

/* Returns a new JSON array of the ids as strings, oldest first, or NULL
 * when memory runs out or an id is not valid UTF-8. The caller owns the
 * reference. */
json_t *cel__revoked_ids(cel__revoked_t *set, double now);

/* Returns a new JSON object in the shape of LimitedSet._data, which a
 * mingle `hello` request and reply carry:
 * {"<id>": [<added_at>, "<id>"], ...}, oldest first. Each added_at is a
 * JSON real even when it has no fraction, because LimitedSet.update in
 * Celery 5.2 raises ValueError for an int. Returns NULL when memory runs
 * out or an id is not valid UTF-8. The caller owns the reference. */
json_t *cel__revoked_dump(cel__revoked_t *set, double now);

/* Merges an object that another worker's `hello` sends (the shape that
 * cel__revoked_dump returns), and borrows `dump`. A value may be
 * [<real>, ...] or a bare <real>, as LimitedSet.update takes. Entries of
 * any other shape are skipped. So is an int time, because
 * LimitedSet.update raises ValueError for it. A `dump` that is not an
 * object is skipped whole. An id that is already present keeps the later of its
 * two times, unlike LimitedSet.update, which takes the merged one even when it
 * is older. Merged ids that have expired at `now` are dropped, and past
 * max_entries the oldest go. Returns CEL_OK, or CEL_ENOMEM after merging
 * the entries that fit. */
int cel__revoked_merge(cel__revoked_t *set, json_t *dump, double now);

#endif
