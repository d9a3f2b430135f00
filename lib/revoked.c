#include "revoked.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define INITIAL_BUCKETS 64

/* One id, chained in its hash bucket and in the list ordered by added_at,
 * oldest first. */
struct entry {
    struct entry *bucket_next;
    struct entry *older;
    struct entry *newer;
    uint64_t hash;
    double added_at;
    char id[];
};

struct cel__revoked {
    struct entry **buckets;
    size_t bucket_count; /* a power of two */
    size_t count;
    struct entry *oldest;
    struct entry *newest;
    size_t max_entries; /* 0: no limit */
    double expires;     /* seconds; 0 or less: no expiry */
};

/* FNV-1a, 64-bit. */
static uint64_t hash_id(const char *id)
{
    uint64_t hash = 14695981039346656037u;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        hash ^= *p;
        hash *= 1099511628211u;
    }
    return hash;
}

static struct entry **bucket_of(const cel__revoked_t *set, uint64_t hash)
{
    return &set->buckets[hash & (set->bucket_count - 1)];
}

/* Returns the link that points at the entry for id, or the NULL link at the
 * end of its bucket's chain when id is absent. */
static struct entry **find_link(const cel__revoked_t *set, const char *id,
                                uint64_t hash)
{
    struct entry **link = bucket_of(set, hash);
    while (*link != NULL &&
           ((*link)->hash != hash || strcmp((*link)->id, id) != 0))
        link = &(*link)->bucket_next;
    return link;
}

static void unlink_order(cel__revoked_t *set, struct entry *entry)
{
    if (entry->older != NULL)
        entry->older->newer = entry->newer;
    else
        set->oldest = entry->newer;
    if (entry->newer != NULL)
        entry->newer->older = entry->older;
    else
        set->newest = entry->older;
    entry->older = entry->newer = NULL;
}

static void link_after(cel__revoked_t *set, struct entry *entry,
                       struct entry *older)
{
    entry->older = older;
    entry->newer = older != NULL ? older->newer : set->oldest;
    if (entry->newer != NULL)
        entry->newer->older = entry;
    else
        set->newest = entry;
    if (older != NULL)
        older->newer = entry;
    else
        set->oldest = entry;
}

/* Links the entry in added_at order. The walk back from the newest end is
 * empty when times only grow, as a monotonic clock makes them. */
static void link_in_order(cel__revoked_t *set, struct entry *entry)
{
    struct entry *older = set->newest;
    while (older != NULL && older->added_at > entry->added_at)
        older = older->older;
    link_after(set, entry, older);
}

static void remove_entry(cel__revoked_t *set, struct entry *entry)
{
    struct entry **link = find_link(set, entry->id, entry->hash);
    *link = entry->bucket_next;
    unlink_order(set, entry);
    set->count--;
    free(entry);
}

static bool is_expired(const cel__revoked_t *set, const struct entry *entry,
                       double now)
{
    return set->expires > 0 && entry->added_at + set->expires <= now;
}

/* Drops the oldest ids past max_entries, then every id that has expired.
 * The list is in added_at order, so both stop at the first id they keep. */
static void purge(cel__revoked_t *set, double now)
{
    while (set->max_entries > 0 && set->count > set->max_entries)
        remove_entry(set, set->oldest);
    while (set->oldest != NULL && is_expired(set, set->oldest, now))
        remove_entry(set, set->oldest);
}

/* Doubles the bucket array once the load factor passes 3/4. When the
 * allocation fails the chains grow longer and lookups slower, but every
 * id still fits, so the caller carries on. */
static void maybe_grow(cel__revoked_t *set)
{
    if (set->count < set->bucket_count / 4 * 3)
        return;
    size_t bucket_count = set->bucket_count * 2;
    struct entry **buckets = calloc(bucket_count, sizeof *buckets);
    if (buckets == NULL)
        return;
    for (struct entry *entry = set->oldest; entry; entry = entry->newer) {
        struct entry **head = &buckets[entry->hash & (bucket_count - 1)];
        entry->bucket_next = *head;
        *head = entry;
    }
    free(set->buckets);
    set->buckets = buckets;
    set->bucket_count = bucket_count;
}

cel__revoked_t *cel__revoked_new(size_t max_entries, double expires_seconds)
{
    cel__revoked_t *set = calloc(1, sizeof *set);
    if (set == NULL)
        return NULL;
    set->buckets = calloc(INITIAL_BUCKETS, sizeof *set->buckets);
    if (set->buckets == NULL) {
        free(set);
        return NULL;
    }
    set->bucket_count = INITIAL_BUCKETS;
    set->max_entries = max_entries;
    set->expires = expires_seconds > 0 ? expires_seconds : 0;
    return set;
}

void cel__revoked_free(cel__revoked_t *set)
{
    if (set == NULL)
        return;
    struct entry *entry = set->oldest;
    while (entry != NULL) {
        struct entry *newer = entry->newer;
        free(entry);
        entry = newer;
    }
    free(set->buckets);
    free(set);
}

/* Sets id's time to added_at, inserting it when absent. With keep_later,
 * an id already present keeps the later of its old and new times. When
 * in_order is false the entry goes to the newest end whatever its time,
 * and the caller sorts the list afterwards. */
static int upsert(cel__revoked_t *set, const char *id, double added_at,
                  bool keep_later, bool in_order)
{
    uint64_t hash = hash_id(id);
    struct entry **link = find_link(set, id, hash);
    struct entry *entry = *link;
    if (entry != NULL) {
        if (keep_later && entry->added_at >= added_at)
            return CEL_OK;
        unlink_order(set, entry);
    } else {
        size_t length = strlen(id);
        entry = malloc(sizeof *entry + length + 1);
        if (entry == NULL)
            return CEL_ENOMEM;
        memcpy(entry->id, id, length + 1);
        entry->hash = hash;
        entry->bucket_next = *link;
        *link = entry;
        set->count++;
    }
    entry->added_at = added_at;
    if (in_order)
        link_in_order(set, entry);
    else
        link_after(set, entry, set->newest);
    return CEL_OK;
}

int cel__revoked_add(cel__revoked_t *set, const char *task_id, double now)
{
    if (task_id == NULL)
        return CEL_EINVAL;
    purge(set, now);
    maybe_grow(set);
    int status = upsert(set, task_id, now, false, true);
    purge(set, now);
    return status;
}

bool cel__revoked_contains(cel__revoked_t *set, const char *task_id, double now)
{
    if (task_id == NULL)
        return false;
    purge(set, now);
    if (set->count == 0)
        return false; /* skips hashing the id while nothing is revoked */
    return *find_link(set, task_id, hash_id(task_id)) != NULL;
}

size_t cel__revoked_count(cel__revoked_t *set, double now)
{
    purge(set, now);
    return set->count;
}

json_t *cel__revoked_ids(cel__revoked_t *set, double now)
{
    purge(set, now);
    json_t *ids = json_array();
    if (ids == NULL)
        return NULL;
    for (struct entry *entry = set->oldest; entry; entry = entry->newer) {
        if (json_array_append_new(ids, json_string(entry->id)) != 0) {
            json_decref(ids);
            return NULL;
        }
    }
    return ids;
}

json_t *cel__revoked_dump(cel__revoked_t *set, double now)
{
    purge(set, now);
    json_t *dump = json_object();
    if (dump == NULL)
        return NULL;
    for (struct entry *entry = set->oldest; entry; entry = entry->newer) {
        /* json_pack's "f" always builds a real, never an int. */
        json_t *pair = json_pack("[fs]", entry->added_at, entry->id);
        if (json_object_set_new(dump, entry->id, pair) != 0) {
            json_decref(dump);
            return NULL;
        }
    }
    return dump;
}

/* Finds the time in one merged value, [<real>, ...] or a bare <real>.
 * Returns false for any other shape. */
static bool merged_time(json_t *value, double *added_at)
{
    if (json_is_array(value))
        value = json_array_get(value, 0);
    if (!json_is_real(value))
        return false;
    *added_at = json_real_value(value);
    return true;
}

static struct entry *merge_runs(struct entry *first, struct entry *second)
{
    struct entry *merged = NULL;
    struct entry **tail = &merged;
    while (first != NULL && second != NULL) {
        /* Taking from the first run on a tie keeps the sort stable. */
        struct entry **from =
            second->added_at < first->added_at ? &second : &first;
        *tail = *from;
        tail = &(*from)->newer;
        *from = (*from)->newer;
    }
    *tail = first != NULL ? first : second;
    return merged;
}

/* Merge-sorts `length` entries linked by their newer pointers, and returns
 * the new first one. The older pointers are stale until sort_by_time relinks
 * them. */
static struct entry *sort_run(struct entry *first, size_t length)
{
    if (length < 2) {
        if (first != NULL)
            first->newer = NULL;
        return first;
    }
    struct entry *last_of_first = first;
    for (size_t i = 1; i < length / 2; i++)
        last_of_first = last_of_first->newer;
    struct entry *second = last_of_first->newer;
    last_of_first->newer = NULL;
    first = sort_run(first, length / 2);
    second = sort_run(second, length - length / 2);
    return merge_runs(first, second);
}

static void sort_by_time(cel__revoked_t *set)
{
    set->oldest = sort_run(set->oldest, set->count);
    struct entry *older = NULL;
    for (struct entry *entry = set->oldest; entry; entry = entry->newer) {
        entry->older = older;
        older = entry;
    }
    set->newest = older;
}

int cel__revoked_merge(cel__revoked_t *set, json_t *dump, double now)
{
    int status = CEL_OK;
    const char *id;
    json_t *value;

    if (!json_is_object(dump))
        goto out;
    /* Appending every merged entry and then sorting once costs
     * O(n log n), where inserting each old time in place could walk the
     * whole list for every entry. */
    json_object_foreach(dump, id, value) {
        double added_at;
        if (!merged_time(value, &added_at))
            continue;
        maybe_grow(set);
        status = upsert(set, id, added_at, true, false);
        if (status != CEL_OK)
            break;
    }
    sort_by_time(set);

out:
    purge(set, now);
    return status;
}
