#ifndef BERTH_CCURL_SHIM_H
#define BERTH_CCURL_SHIM_H

#include <curl/curl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* curl_easy_setopt and curl_easy_getinfo are variadic, which Swift cannot call.
   These typed, non-variadic wrappers (and one helper for curl_multi_fdset's fd_set, whose macros
   Swift cannot use either) are the only C in Berth. */

static inline CURLcode berth_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode berth_setopt_off(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode berth_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode berth_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode berth_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value) {
    return curl_easy_setopt(handle, option, value);
}

typedef size_t (*berth_data_callback)(char *buffer, size_t size, size_t count, void *userdata);
typedef int (*berth_xferinfo_callback)(void *userdata, curl_off_t dltotal, curl_off_t dlnow,
                                       curl_off_t ultotal, curl_off_t ulnow);
typedef int (*berth_debug_callback)(CURL *handle, curl_infotype type, char *data, size_t size,
                                    void *userdata);

static inline CURLcode berth_setopt_data_callback(CURL *handle, CURLoption option, berth_data_callback value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode berth_setopt_xferinfo_callback(CURL *handle, berth_xferinfo_callback value) {
    return curl_easy_setopt(handle, CURLOPT_XFERINFOFUNCTION, value);
}

static inline CURLcode berth_setopt_debug_callback(CURL *handle, berth_debug_callback value) {
    return curl_easy_setopt(handle, CURLOPT_DEBUGFUNCTION, value);
}

/* PEM held in memory (a CA, a client certificate or key), copied by libcurl. */
static inline CURLcode berth_setopt_blob(CURL *handle, CURLoption option, const void *data, size_t length) {
    struct curl_blob blob = { (void *)data, length, CURL_BLOB_COPY };
    return curl_easy_setopt(handle, option, data ? &blob : NULL);
}

static inline CURLcode berth_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}

/* The connection's socket after CURLOPT_CONNECT_ONLY, or -1. */
static inline curl_socket_t berth_active_socket(CURL *handle) {
    curl_socket_t socket = CURL_SOCKET_BAD;
    if (curl_easy_getinfo(handle, CURLINFO_ACTIVESOCKET, &socket) != CURLE_OK) return CURL_SOCKET_BAD;
    return socket;
}

/* The socket a multi handle's transfer waits to read from (the engine's answer to a request sent
   in full), or -1 when it waits for anything else. A worker's multi handle drives one transfer. */
static inline int berth_multi_reading_socket(CURLM *multi) {
    fd_set readable, writable, failed;
    FD_ZERO(&readable);
    FD_ZERO(&writable);
    FD_ZERO(&failed);
    int highest = -1;
    if (curl_multi_fdset(multi, &readable, &writable, &failed, &highest) != CURLM_OK || highest < 0) {
        return -1;
    }
    return FD_ISSET(highest, &readable) && !FD_ISSET(highest, &writable) ? highest : -1;
}

/* Starts OpenSSL, before libcurl would, with `options` (OPENSSL_init_crypto's). Looked up in the
   libcrypto libcurl already loaded, so building needs no OpenSSL headers. 1 when done. */
static inline int berth_start_openssl(uint64_t options) {
    typedef int (*init_crypto)(uint64_t options, const void *settings);
    init_crypto init = (init_crypto)dlsym(RTLD_DEFAULT, "OPENSSL_init_crypto");
    if (!init) return 0;
    return init(options, NULL);
}

/* Without the clean-up OpenSSL otherwise registers with atexit (OPENSSL_INIT_NO_ATEXIT): a daemon
   exiting while a libcurl worker thread is still ending would have it free what the thread's own
   end frees too ("double free or corruption" in libcrypto at exit). */
#define BERTH_OPENSSL_NO_EXIT_CLEANUP 0x00080000ULL
/* Without the tables of ciphers and digests, the configuration file and the error strings, which
   only libcurl's certificate checks need (OPENSSL_INIT_NO_LOAD_CRYPTO_STRINGS, _NO_ADD_ALL_CIPHERS,
   _NO_ADD_ALL_DIGESTS, _NO_LOAD_CONFIG; the same in OpenSSL 1.1 and 3). */
#define BERTH_OPENSSL_WITHOUT_TLS 0xB1ULL /* 0x01 | 0x10 | 0x20 | 0x80 */

/* One TLS session cache for every handle of a transport (CURL_LOCK_DATA_SSL_SESSION): a handle
   that connects, again or for the first time, resumes a session any of them made. */
typedef struct berth_tls_sessions {
    CURLSH *share;
    pthread_mutex_t mutex;
} berth_tls_sessions;

static inline void berth_tls_sessions_lock(CURL *handle, curl_lock_data data, curl_lock_access access, void *sessions) {
    (void)handle; (void)data; (void)access;
    pthread_mutex_lock(&((berth_tls_sessions *)sessions)->mutex);
}

static inline void berth_tls_sessions_unlock(CURL *handle, curl_lock_data data, void *sessions) {
    (void)handle; (void)data;
    pthread_mutex_unlock(&((berth_tls_sessions *)sessions)->mutex);
}

/* NULL when libcurl cannot share sessions; each handle then keeps its own. */
static inline berth_tls_sessions *berth_tls_sessions_new(void) {
    berth_tls_sessions *sessions = calloc(1, sizeof *sessions);
    if (!sessions) return NULL;
    pthread_mutex_init(&sessions->mutex, NULL);
    sessions->share = curl_share_init();
    if (!sessions->share
        || curl_share_setopt(sessions->share, CURLSHOPT_LOCKFUNC, berth_tls_sessions_lock) != CURLSHE_OK
        || curl_share_setopt(sessions->share, CURLSHOPT_UNLOCKFUNC, berth_tls_sessions_unlock) != CURLSHE_OK
        || curl_share_setopt(sessions->share, CURLSHOPT_USERDATA, sessions) != CURLSHE_OK
        || curl_share_setopt(sessions->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
        if (sessions->share) curl_share_cleanup(sessions->share);
        pthread_mutex_destroy(&sessions->mutex);
        free(sessions);
        return NULL;
    }
    return sessions;
}

/* Only once every handle that used it has been cleaned up. */
static inline void berth_tls_sessions_free(berth_tls_sessions *sessions) {
    curl_share_cleanup(sessions->share);
    pthread_mutex_destroy(&sessions->mutex);
    free(sessions);
}

static inline CURLcode berth_use_tls_sessions(CURL *handle, berth_tls_sessions *sessions) {
    return curl_easy_setopt(handle, CURLOPT_SHARE, sessions->share);
}

#endif
