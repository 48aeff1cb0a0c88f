/* Structural check of an LMDB data file before LMDB maps and trusts it. */

#include "lib.h"
#include "str-sanitize.h"
#include "store-lmdb-verify.h"

#include <sys/stat.h>
#include <unistd.h>

/* LMDB's on-disk layout (mdb.c, data version 1). Numbers are in host byte
   order and page numbers are size_t wide. */
#define VERIFY_MAGIC 0xBEEFC0DE
#define VERIFY_DATA_VERSION 1
#define VERIFY_PGNO_SIZE sizeof(size_t)
/* page header: pgno, pad, flags, lower, upper (or the overflow count) */
#define VERIFY_PAGEHDRSZ (VERIFY_PGNO_SIZE + 8)
#define VERIFY_OFF_FLAGS (VERIFY_PGNO_SIZE + 2)
#define VERIFY_OFF_LOWER (VERIFY_PGNO_SIZE + 4)
#define VERIFY_OFF_UPPER (VERIFY_PGNO_SIZE + 6)
#define VERIFY_OFF_PAGES (VERIFY_PGNO_SIZE + 4)
/* node header: lo, hi, flags, key size */
#define VERIFY_NODESIZE 8
/* MDB_db: pad, flags, depth, 3 page counts, entries, root */
#define VERIFY_DB_SIZE (8 + 5 * VERIFY_PGNO_SIZE)
/* MDB_meta: magic, version, address, mapsize, dbs[2], last_pg, txnid */
#define VERIFY_META_DBS (8 + 2 * VERIFY_PGNO_SIZE)
#define VERIFY_META_LAST_PG (VERIFY_META_DBS + 2 * VERIFY_DB_SIZE)
#define VERIFY_META_TXNID (VERIFY_META_LAST_PG + VERIFY_PGNO_SIZE)
#define VERIFY_META_SIZE (VERIFY_META_TXNID + VERIFY_PGNO_SIZE)

#define P_BRANCH 0x01
#define P_LEAF 0x02
#define P_OVERFLOW 0x04
#define P_META 0x08
#define P_LEAF2 0x20
#define P_SUBP 0x40
#define P_TYPES (P_BRANCH | P_LEAF | P_OVERFLOW | P_META | P_LEAF2 | P_SUBP)
#define F_BIGDATA 0x01
#define F_SUBDATA 0x02
#define VERIFY_P_INVALID ((size_t)-1)
#define VERIFY_NUM_METAS 2
/* LMDB's cursor stack holds 32 pages */
#define VERIFY_MAX_DEPTH 31

enum verify_db_kind {
	VERIFY_DB_FREE,
	VERIFY_DB_MAIN,
	VERIFY_DB_NAMED,
};

struct verify_db {
	uint16_t depth;
	uint64_t entries;
	size_t root;
};

struct verify_context {
	int fd;
	size_t page_size;
	size_t last_pg;
	/* one bit per page: a page reachable twice is damage, and reading
	   each page once bounds the work */
	unsigned char *visited;
	/* one page buffer per tree level, for the main database and for a
	   named one in it, which the walk enters from a main leaf page */
	unsigned char *pages[2 * (VERIFY_MAX_DEPTH + 1)];
	unsigned int page_base;
	unsigned char *overflow_hdr;

	const char *reason;
	/* reading failed, as opposed to damage */
	bool io_error;
};

static uint16_t verify_u16(const unsigned char *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static uint32_t verify_u32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static size_t verify_size(const unsigned char *p)
{
	size_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static bool ATTR_FORMAT(2, 3)
verify_fail(struct verify_context *ctx, const char *fmt, ...)
{
	va_list args;

	if (ctx->reason == NULL) {
		va_start(args, fmt);
		ctx->reason = t_strdup_vprintf(fmt, args);
		va_end(args);
	}
	return FALSE;
}

static bool
verify_read(struct verify_context *ctx, size_t pgno, void *buf, size_t size)
{
	ssize_t ret;

	ret = pread(ctx->fd, buf, size, (off_t)(pgno * ctx->page_size));
	if (ret == (ssize_t)size)
		return TRUE;
	if (ret < 0) {
		ctx->io_error = TRUE;
		return verify_fail(ctx, "pread() failed: %m");
	}
	return verify_fail(ctx, "page %zu is beyond the end of the file",
			   pgno);
}

/* Marks count pages from pgno as used by the tree. */
static bool
verify_claim(struct verify_context *ctx, size_t pgno, size_t count,
	     const char *what)
{
	size_t i;

	if (pgno < VERIFY_NUM_METAS || pgno > ctx->last_pg ||
	    count > ctx->last_pg - pgno + 1) {
		return verify_fail(ctx, "%s page %zu (%zu pages) is outside "
				   "the file's %zu pages", what, pgno, count,
				   ctx->last_pg + 1);
	}
	for (i = pgno; i < pgno + count; i++) {
		if ((ctx->visited[i / 8] & (1 << (i % 8))) != 0) {
			return verify_fail(ctx, "page %zu is reachable twice",
					   i);
		}
		ctx->visited[i / 8] |= 1 << (i % 8);
	}
	return TRUE;
}

static bool
verify_tree(struct verify_context *ctx, enum verify_db_kind kind,
	    const struct verify_db *db, const char *name);

/* The overflow pages of a big value; reads its data into *data_r when
   data_r is not NULL (the free list's page lists). */
static bool
verify_overflow(struct verify_context *ctx, size_t pgno, size_t data_size,
		unsigned char **data_r)
{
	unsigned char *hdr = ctx->overflow_hdr;
	size_t pages, needed;

	if (!verify_claim(ctx, pgno, 1, "overflow") ||
	    !verify_read(ctx, pgno, hdr, VERIFY_PAGEHDRSZ))
		return FALSE;
	pages = verify_u32(hdr + VERIFY_OFF_PAGES);
	needed = (VERIFY_PAGEHDRSZ - 1 + data_size) / ctx->page_size + 1;
	if (verify_size(hdr) != pgno ||
	    (verify_u16(hdr + VERIFY_OFF_FLAGS) & P_TYPES) != P_OVERFLOW) {
		return verify_fail(ctx, "page %zu is not the overflow page "
				   "its node points to", pgno);
	}
	if (pages < needed) {
		return verify_fail(ctx, "overflow page %zu has %zu pages for "
				   "%zu bytes", pgno, pages, data_size);
	}
	if (pages > 1 && !verify_claim(ctx, pgno + 1, pages - 1, "overflow"))
		return FALSE;
	if (data_r == NULL)
		return TRUE;
	*data_r = t_malloc_no0(I_MAX(data_size, 1));
	if (pread(ctx->fd, *data_r, data_size,
		  (off_t)(pgno * ctx->page_size + VERIFY_PAGEHDRSZ)) !=
	    (ssize_t)data_size) {
		ctx->io_error = TRUE;
		return verify_fail(ctx, "pread() failed: %m");
	}
	return TRUE;
}

/* A free list record: a count, then that many page numbers. */
static bool
verify_free_list(struct verify_context *ctx, const unsigned char *data,
		 size_t size)
{
	size_t count, i, pgno;

	if (size < VERIFY_PGNO_SIZE)
		return verify_fail(ctx, "free list record too short");
	count = verify_size(data);
	if (count > size / VERIFY_PGNO_SIZE - 1)
		return verify_fail(ctx, "free list record count too large");
	for (i = 1; i <= count; i++) {
		pgno = verify_size(data + i * VERIFY_PGNO_SIZE);
		if (pgno < VERIFY_NUM_METAS || pgno > ctx->last_pg) {
			return verify_fail(ctx, "free page %zu is outside "
					   "the file", pgno);
		}
	}
	return TRUE;
}

static bool
verify_db_parse(struct verify_context *ctx, const unsigned char *p,
		struct verify_db *db_r, const char *name)
{
	db_r->depth = verify_u16(p + 6);
	db_r->entries = verify_size(p + 8 + 3 * VERIFY_PGNO_SIZE);
	db_r->root = verify_size(p + 8 + 4 * VERIFY_PGNO_SIZE);
	if ((verify_u16(p + 4) & 0x04) != 0 && *name != '\0') {
		/* MDB_DUPSORT: the store never creates one */
		return verify_fail(ctx, "database %s has duplicates", name);
	}
	if (db_r->root == VERIFY_P_INVALID)
		return TRUE;
	if (db_r->depth == 0 || db_r->depth > VERIFY_MAX_DEPTH) {
		return verify_fail(ctx, "database %s has depth %u", name,
				   db_r->depth);
	}
	return TRUE;
}

/* One leaf node's data: inline, on overflow pages, or a named database. */
static bool
verify_leaf_node(struct verify_context *ctx, enum verify_db_kind kind,
		 const unsigned char *page, size_t off)
{
	const unsigned char *node = page + off, *data;
	uint16_t flags = verify_u16(node + 4), ksize = verify_u16(node + 6);
	size_t dsize = verify_u16(node) | ((size_t)verify_u16(node + 2) << 16);
	size_t end = off + VERIFY_NODESIZE + ksize;
	unsigned char *big = NULL;
	struct verify_db sub;
	const char *name;
	bool ok;

	if ((flags & ~(F_BIGDATA | F_SUBDATA)) != 0 ||
	    flags == (F_BIGDATA | F_SUBDATA) ||
	    ((flags & F_SUBDATA) != 0 && kind != VERIFY_DB_MAIN))
		return verify_fail(ctx, "node with flags 0x%x", flags);
	if ((flags & F_BIGDATA) != 0) {
		if (end > ctx->page_size - VERIFY_PGNO_SIZE)
			return verify_fail(ctx, "node exceeds its page");
		if (!verify_overflow(ctx, verify_size(page + end), dsize,
				     kind == VERIFY_DB_FREE ? &big : NULL))
			return FALSE;
		data = big;
	} else {
		if (dsize > ctx->page_size || end + dsize > ctx->page_size)
			return verify_fail(ctx, "node exceeds its page");
		data = page + end;
	}

	if (kind == VERIFY_DB_FREE)
		return verify_free_list(ctx, data, dsize);
	if ((flags & F_SUBDATA) == 0)
		return TRUE;
	if (dsize != VERIFY_DB_SIZE)
		return verify_fail(ctx, "named database record of %zu bytes",
				   dsize);
	name = str_sanitize(t_strndup(page + off + VERIFY_NODESIZE, ksize),
			    64);
	if (!verify_db_parse(ctx, data, &sub, name))
		return FALSE;
	ctx->page_base = VERIFY_MAX_DEPTH + 1;
	ok = verify_tree(ctx, VERIFY_DB_NAMED, &sub, name);
	ctx->page_base = 0;
	return ok;
}

/* Checks the page pgno at level (1 = root) of a tree of the given depth,
   and everything below it; counts its entries. */
static bool
verify_page(struct verify_context *ctx, enum verify_db_kind kind,
	    size_t pgno, unsigned int level, unsigned int depth,
	    uint64_t *entries)
{
	unsigned char *page = ctx->pages[ctx->page_base + level];
	uint16_t flags, lower, upper, off, ksize;
	unsigned int i, count;
	size_t child;

	if (!verify_claim(ctx, pgno, 1, "tree") ||
	    !verify_read(ctx, pgno, page, ctx->page_size))
		return FALSE;
	flags = verify_u16(page + VERIFY_OFF_FLAGS) & P_TYPES;
	lower = verify_u16(page + VERIFY_OFF_LOWER);
	upper = verify_u16(page + VERIFY_OFF_UPPER);
	if (verify_size(page) != pgno)
		return verify_fail(ctx, "page %zu says it is page %zu", pgno,
				   verify_size(page));
	if (flags != (level < depth ? P_BRANCH : P_LEAF)) {
		return verify_fail(ctx, "page %zu at level %u of %u has "
				   "flags 0x%x", pgno, level, depth, flags);
	}
	if (lower < VERIFY_PAGEHDRSZ + 2 || lower % 2 != 0 || upper < lower ||
	    upper > ctx->page_size) {
		return verify_fail(ctx, "page %zu has bounds %u..%u", pgno,
				   lower, upper);
	}
	count = (lower - VERIFY_PAGEHDRSZ) / 2;
	for (i = 0; i < count; i++) {
		off = verify_u16(page + VERIFY_PAGEHDRSZ + 2 * i);
		if (off < upper || off % 2 != 0 ||
		    off > ctx->page_size - VERIFY_NODESIZE) {
			return verify_fail(ctx, "page %zu: node %u at offset "
					   "%u", pgno, i, off);
		}
		ksize = verify_u16(page + off + 6);
		if ((size_t)off + VERIFY_NODESIZE + ksize > ctx->page_size)
			return verify_fail(ctx, "page %zu: node %u exceeds "
					   "the page", pgno, i);
		if (flags == P_LEAF) {
			if (!verify_leaf_node(ctx, kind, page, off))
				return FALSE;
			(*entries)++;
			continue;
		}
		child = verify_u16(page + off) |
			((size_t)verify_u16(page + off + 2) << 16);
#if SIZE_MAX > 0xffffffffU
		child |= (size_t)verify_u16(page + off + 4) << 32;
#endif
		if (!verify_page(ctx, kind, child, level + 1, depth, entries))
			return FALSE;
	}
	return TRUE;
}

static bool
verify_tree(struct verify_context *ctx, enum verify_db_kind kind,
	    const struct verify_db *db, const char *name)
{
	uint64_t entries = 0;

	if (db->root == VERIFY_P_INVALID) {
		if (db->entries != 0)
			return verify_fail(ctx, "empty database %s has "
					   "%"PRIu64" entries", name,
					   db->entries);
		return TRUE;
	}
	if (!verify_page(ctx, kind, db->root, 1, db->depth, &entries))
		return FALSE;
	if (entries != db->entries) {
		return verify_fail(ctx, "database %s has %"PRIu64" entries, "
				   "says %"PRIu64, name, entries, db->entries);
	}
	return TRUE;
}

/* The meta page LMDB picks: the one with the newer transaction. */
static bool
verify_meta(struct verify_context *ctx, struct verify_db *free_r,
	    struct verify_db *main_r)
{
	unsigned char *pages[VERIFY_NUM_METAS], *meta;
	struct stat st;
	uoff_t file_size;
	unsigned int i;

	for (i = 0; i < VERIFY_NUM_METAS; i++) {
		pages[i] = t_malloc_no0(VERIFY_PAGEHDRSZ + VERIFY_META_SIZE);
		if (!verify_read(ctx, i, pages[i],
				 VERIFY_PAGEHDRSZ + VERIFY_META_SIZE))
			return FALSE;
		meta = pages[i] + VERIFY_PAGEHDRSZ;
		if (verify_u32(meta) != VERIFY_MAGIC ||
		    verify_u32(meta + 4) != VERIFY_DATA_VERSION)
			return verify_fail(ctx, "meta page %u is invalid", i);
		if (verify_u32(meta + VERIFY_META_DBS) != ctx->page_size) {
			return verify_fail(ctx, "meta page %u has page size "
					   "%u", i,
					   verify_u32(meta + VERIFY_META_DBS));
		}
	}
	meta = verify_size(pages[0] + VERIFY_PAGEHDRSZ + VERIFY_META_TXNID) <
		verify_size(pages[1] + VERIFY_PAGEHDRSZ + VERIFY_META_TXNID) ?
		pages[1] : pages[0];
	meta += VERIFY_PAGEHDRSZ;
	ctx->last_pg = verify_size(meta + VERIFY_META_LAST_PG);
	/* The size is taken after the meta pages were read: a writer that
	   committed meanwhile wrote its pages before its meta page, and the
	   file only grows, so the size is never older than the meta. */
	if (fstat(ctx->fd, &st) < 0) {
		ctx->io_error = TRUE;
		return verify_fail(ctx, "fstat() failed: %m");
	}
	file_size = st.st_size;
	if (ctx->last_pg < VERIFY_NUM_METAS - 1 ||
	    file_size / ctx->page_size < ctx->last_pg + 1) {
		return verify_fail(ctx, "file is truncated (%"PRIuUOFF_T
				   " bytes, its meta page says %zu pages of "
				   "%zu bytes)", file_size, ctx->last_pg + 1,
				   ctx->page_size);
	}
	return verify_db_parse(ctx, meta + VERIFY_META_DBS, free_r, "") &&
		verify_db_parse(ctx, meta + VERIFY_META_DBS + VERIFY_DB_SIZE,
				main_r, "(main)");
}

int store_lmdb_verify(int fd, size_t page_size, const char **reason_r)
{
	struct verify_context ctx;
	struct verify_db free_db, main_db;
	struct stat st;
	unsigned int i;
	bool ok;

	if (fstat(fd, &st) < 0) {
		*reason_r = t_strdup_printf("fstat() failed: %m");
		return -1;
	}
	i_zero(&ctx);
	ctx.fd = fd;
	ctx.page_size = page_size;
	if ((uoff_t)st.st_size < VERIFY_NUM_METAS * page_size) {
		*reason_r = "file is shorter than its meta pages";
		return 0;
	}
	T_BEGIN {
		ok = verify_meta(&ctx, &free_db, &main_db);
		if (ok) {
			ctx.visited = t_malloc0(ctx.last_pg / 8 + 1);
			for (i = 0; i < N_ELEMENTS(ctx.pages); i++)
				ctx.pages[i] = t_malloc_no0(page_size);
			ctx.overflow_hdr = t_malloc_no0(VERIFY_PAGEHDRSZ);
			ok = verify_tree(&ctx, VERIFY_DB_MAIN, &main_db,
					 "(main)") &&
				verify_tree(&ctx, VERIFY_DB_FREE, &free_db,
					    "(free)");
		}
		if (!ok) {
			*reason_r = t_strdup_printf("damaged: %s",
						    ctx.reason);
		}
	} T_END_PASS_STR_IF(!ok, reason_r);
	if (ok)
		return 1;
	return ctx.io_error ? -1 : 0;
}
