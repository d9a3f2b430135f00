/* Result storing. The rpc:// backend sends each state as a message to the
 * client's reply_to queue through the default exchange. */
#include <stdlib.h>
#include <string.h>

#include "worker_internal.h"

void cel__store_result(cel_worker_t *worker, const char *task_id,
                       const char *reply_to, const char *correlation_id,
                       const char *status, json_t *result,
                       const char *traceback)
{
    if (worker->backend == CEL__BACKEND_DISABLED || worker->broker == NULL ||
        reply_to == NULL || reply_to[0] == '\0' || task_id == NULL)
        return;

    char *body =
        cel__result_encode_rpc(task_id, status, result, traceback, NULL);
    if (body == NULL) {
        cel__log(worker->app, CEL_LOG_ERROR,
                 "Cannot encode the %s result of task %s: out of memory",
                 status, task_id);
        return;
    }
    cel__publish_t msg = {
        .exchange = "",
        .routing_key = reply_to,
        .correlation_id = correlation_id ? correlation_id : task_id,
        .delivery_mode = worker->app->settings.result_persistent ? 2 : 1,
        .priority = 0,
        .body = body,
        .body_len = strlen(body),
    };
    if (cel__broker_publish(worker->broker, &msg) != CEL_OK)
        cel__log(worker->app, CEL_LOG_ERROR,
                 "Cannot send the %s result of task %s to %s: %s", status,
                 task_id, reply_to, cel__broker_error(worker->broker));
    free(body);
}

void cel__store_exception(cel_worker_t *worker, const cel__task_message_t *msg,
                          const char *status, const char *exc_type,
                          const char *exc_module, const char *message,
                          const char *traceback)
{
    json_t *exc = cel__exception_new(exc_type, exc_module, message);
    cel__store_result(worker, msg->id, msg->reply_to, msg->correlation_id,
                      status, exc, traceback);
    json_decref(exc);
}
