#ifndef BERTH_CSODIUM_SHIM_H
#define BERTH_CSODIUM_SHIM_H

/* libsodium, for Argon2id password hashes: its crypto_pwhash_str functions write and check the
   standard "$argon2id$v=19$m=…,t=…,p=…$salt$hash" strings. */
#include <sodium.h>

#endif
