/* The ready queue: requests that are due come out oldest first. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker_internal.h"

/* The capacity the queue takes on its first push, from ready_queue.c. */
#define FIRST_CAPACITY 64

/* Builds a request with owned strings, so that LeakSanitizer reports any
 * that the queue fails to free. */
static cel__request_t *request_new(int serial)
{
    cel__request_t *request = calloc(1, sizeof *request);
    ck_assert_ptr_nonnull(request);
    char id[32];
    snprintf(id, sizeof id, "ready-%d", serial);
    request->msg.id = strdup(id);
    request->msg.task = strdup("tasks.add");
    request->msg.args = json_pack("[i]", serial);
    request->msg.kwargs = json_object();
    request->exchange = strdup("");
    request->routing_key = strdup("celery");
    request->delivery_tag = (uint64_t)serial;
    return request;
}

static void push_serial(cel__request_queue_t *queue, int serial)
{
    ck_assert_int_eq(cel__ready_push(queue, request_new(serial)), CEL_OK);
}

/* Pops one request, checks that it is `serial`, and frees it. */
static void pop_expecting(cel__request_queue_t *queue, int serial)
{
    cel__request_t *request = cel__ready_pop(queue);
    ck_assert_msg(request != NULL, "queue empty, expected ready-%d", serial);
    ck_assert_msg(request->delivery_tag == (uint64_t)serial,
                  "popped ready-%llu, expected ready-%d",
                  (unsigned long long)request->delivery_tag, serial);
    cel__request_free(request);
}

START_TEST(test_ready_empty_queue_pops_null)
{
    cel__request_queue_t queue = {0};
    ck_assert_ptr_null(cel__ready_pop(&queue));
    cel__ready_clear(&queue);
    ck_assert_ptr_null(cel__ready_pop(&queue));
}
END_TEST

START_TEST(test_ready_pops_in_push_order)
{
    cel__request_queue_t queue = {0};
    for (int i = 0; i < 10; i++)
        push_serial(&queue, i);
    ck_assert_uint_eq(queue.count, 10);
    for (int i = 0; i < 10; i++)
        pop_expecting(&queue, i);
    ck_assert_uint_eq(queue.count, 0);
    ck_assert_ptr_null(cel__ready_pop(&queue));
    cel__ready_clear(&queue);
}
END_TEST

START_TEST(test_ready_grows_while_wrapped)
{
    cel__request_queue_t queue = {0};
    int next_push = 0;
    int next_pop = 0;
    for (int i = 0; i < FIRST_CAPACITY; i++)
        push_serial(&queue, next_push++);
    ck_assert_uint_eq(queue.cap, FIRST_CAPACITY);

    /* Move the head forward, then fill the slots before it, so the items
     * wrap around the end of the storage when the queue grows. */
    for (int i = 0; i < 40; i++)
        pop_expecting(&queue, next_pop++);
    for (int i = 0; i < 40; i++)
        push_serial(&queue, next_push++);
    ck_assert_uint_eq(queue.count, FIRST_CAPACITY);
    ck_assert_uint_eq(queue.cap, FIRST_CAPACITY);
    ck_assert_uint_eq(queue.head, 40);

    push_serial(&queue, next_push++);
    ck_assert_uint_eq(queue.count, FIRST_CAPACITY + 1);
    ck_assert_uint_eq(queue.cap, 2 * FIRST_CAPACITY);

    while (next_pop < next_push)
        pop_expecting(&queue, next_pop++);
    ck_assert_ptr_null(cel__ready_pop(&queue));
    cel__ready_clear(&queue);
}
END_TEST

START_TEST(test_ready_interleaved_push_and_pop_stay_ordered)
{
    cel__request_queue_t queue = {0};
    int next_push = 0;
    int next_pop = 0;
    /* Three pushes per pop: the queue grows several times with its head
     * at a different place each time. */
    for (int round = 0; round < 300; round++) {
        for (int i = 0; i < 3; i++)
            push_serial(&queue, next_push++);
        pop_expecting(&queue, next_pop++);
        ck_assert_uint_eq(queue.count, (size_t)(next_push - next_pop));
    }
    ck_assert_uint_ge(queue.cap, queue.count);
    while (next_pop < next_push)
        pop_expecting(&queue, next_pop++);
    cel__ready_clear(&queue);
}
END_TEST

START_TEST(test_ready_clear_frees_requests_and_resets)
{
    cel__request_queue_t queue = {0};
    for (int i = 0; i < 100; i++)
        push_serial(&queue, i);
    for (int i = 0; i < 30; i++)
        pop_expecting(&queue, i);
    for (int i = 100; i < 150; i++)
        push_serial(&queue, i);

    /* LeakSanitizer fails the test if a request or the storage stays. */
    cel__ready_clear(&queue);
    ck_assert_ptr_null(queue.items);
    ck_assert_uint_eq(queue.count, 0);
    ck_assert_uint_eq(queue.cap, 0);
    ck_assert_uint_eq(queue.head, 0);
    ck_assert_ptr_null(cel__ready_pop(&queue));

    /* The queue is usable again after a clear. */
    push_serial(&queue, 7);
    pop_expecting(&queue, 7);
    push_serial(&queue, 8);
    cel__ready_clear(&queue);
    cel__ready_clear(&queue);
}
END_TEST

static Suite *ready_queue_suite(void)
{
    Suite *suite = suite_create("ready_queue");
    TCase *fifo = tcase_create("fifo");
    tcase_add_test(fifo, test_ready_empty_queue_pops_null);
    tcase_add_test(fifo, test_ready_pops_in_push_order);
    tcase_add_test(fifo, test_ready_grows_while_wrapped);
    tcase_add_test(fifo, test_ready_interleaved_push_and_pop_stay_ordered);
    tcase_add_test(fifo, test_ready_clear_frees_requests_and_resets);
    suite_add_tcase(suite, fifo);
    return suite;
}

int main(void)
{
    SRunner *runner = srunner_create(ready_queue_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
