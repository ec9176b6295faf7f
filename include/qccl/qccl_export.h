/* Symbol visibility for the qccl C API: the library is built with hidden visibility and only
 * functions marked QCCL_API are exported. */
#ifndef QCCL_EXPORT_H_
#define QCCL_EXPORT_H_

#if defined(QCCL_COMPILING) && defined(__GNUC__)
#define QCCL_API __attribute__((visibility("default")))
#else
#define QCCL_API
#endif

/* Marks a pointer argument that may be NULL. All other pointer arguments must be non-NULL. */
#define QCCL_NULLABLE

#endif /* QCCL_EXPORT_H_ */
