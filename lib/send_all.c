/* Writing all of a message to a socket that may be full. */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "internal.h"

/* How long a socket may stay full before the write fails. */
#define SEND_TIMEOUT_MS 30000

int cel__send_all(int fd, struct iovec *parts, int count)
{
    while (count > 0) {
        struct msghdr message = {.msg_iov = parts, .msg_iovlen = (size_t)count};
        ssize_t sent = sendmsg(fd, &message, MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR)
            continue;
        if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd wait = {.fd = fd, .events = POLLOUT};
            int ready = poll(&wait, 1, SEND_TIMEOUT_MS);
            if (ready == 0)
                errno = ETIMEDOUT;
            if (ready <= 0)
                return -1;
            continue;
        }
        if (sent < 0)
            return -1;
        size_t done = (size_t)sent;
        while (count > 0 && done >= parts->iov_len) {
            done -= parts->iov_len;
            parts++;
            count--;
        }
        if (count > 0) {
            parts->iov_base = (char *)parts->iov_base + done;
            parts->iov_len -= done;
        }
    }
    return 0;
}
