/*
 * version.h — the version of domicile, as `domicile version` prints it and
 * the audit log records at every start.
 */
#ifndef DM_VERSION_H
#define DM_VERSION_H

#define DM_VERSION "0.2.0"

#endif
