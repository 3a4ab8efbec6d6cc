# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False, embedsignature=True
"""The compiled rating engine. Private: use :mod:`rater.engine`.

An :class:`Engine` reads a compiled deck in place from any buffer (in
production, a read-only memoryview into LMDB's memory map): opening it checks
the header and the section bounds and allocates nothing else. Lookups walk the
breadth-first trie; pricing is exact integer arithmetic in nanos over the
deck's common denominator, rounded once at the end.

Everything that loops runs without the GIL. Results are plain integers:
a negative cost is a Status, never a price.
"""

from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp, memcpy

from _deckformat cimport *

cdef int64_t INF = 0x7fffffffffffffff
cdef int64_t END_INSTANT = 4102444800    # 2100-01-01T00:00:00Z, exclusive
cdef int64_t MAX_SECONDS = 0x7fffffff
cdef int64_t POW10[10]
cdef uint8_t POPCOUNT[1024]

cdef void _init_tables() noexcept:
    cdef int i
    POW10[0] = 1
    for i in range(1, 10):
        POW10[i] = POW10[i - 1] * 10
    for i in range(1024):
        POPCOUNT[i] = (i & 1) + POPCOUNT[i >> 1] if i else 0

_init_tables()


# ---------------------------------------------------------------- time zones

cdef inline int64_t floordiv(int64_t a, int64_t b) noexcept nogil:
    cdef int64_t q = a // b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef inline int64_t tz_offset(const Deck* d, int64_t t) noexcept nogil:
    """UTC offset in force at instant t."""
    cdef uint32_t lo = 0, hi = d.h.n_transitions, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if d.tz_at[mid] <= t:
            lo = mid + 1
        else:
            hi = mid
    return d.tz_offset[lo]


cdef inline int64_t next_transition(const Deck* d, int64_t t) noexcept nogil:
    """The first offset change after instant t, or INF."""
    cdef uint32_t lo = 0, hi = d.h.n_transitions, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if d.tz_at[mid] <= t:
            lo = mid + 1
        else:
            hi = mid
    return d.tz_at[lo] if lo < d.h.n_transitions else INF


cdef inline int64_t wall_to_utc(const Deck* d, int64_t wall) noexcept nogil:
    """Wall-clock seconds to an instant, PEP 495 fold=0 (the offset before a change)."""
    cdef uint32_t lo = 0, hi = d.h.n_transitions, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if d.tz_wall[mid] <= wall:
            lo = mid + 1
        else:
            hi = mid
    return wall - d.tz_offset[lo]


cdef inline int64_t days_from_civil(int64_t y, int64_t m, int64_t day) noexcept nogil:
    y -= m <= 2
    cdef int64_t era = floordiv(y, 400)
    cdef int64_t yoe = y - era * 400
    cdef int64_t mp = m - 3 if m > 2 else m + 9
    cdef int64_t doy = (153 * mp + 2) // 5 + day - 1
    cdef int64_t doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


# ---------------------------------------------------------------- profiles

cdef inline bint profile_active(const Deck* d, int16_t p, int64_t local) noexcept nogil:
    cdef const Profile* pr = &d.profiles[p]
    cdef int64_t day = floordiv(local, 86400)
    cdef int64_t sod = local - day * 86400
    cdef int64_t wd = (day + 3) % 7           # 1970-01-01 was a Thursday; Monday is 0
    if wd < 0:
        wd += 7
    if not (pr.days >> wd) & 1:
        return False
    cdef uint32_t lo, hi, mid
    if pr.date_count:
        lo = pr.date_start
        hi = pr.date_start + pr.date_count
        while lo < hi:
            mid = (lo + hi) >> 1
            if d.dates[mid] < day:
                lo = mid + 1
            else:
                hi = mid
        if lo == pr.date_start + pr.date_count or d.dates[lo] != day:
            return False
    if pr.win_count == 0:
        return True
    cdef uint32_t w
    for w in range(pr.win_start, pr.win_start + pr.win_count):
        if d.windows[w].start <= sod < d.windows[w].end:
            return True
    return False


cdef int64_t next_boundary(const Deck* d, int64_t inst) noexcept nogil:
    """The first instant after inst where a profile of the table may change state.

    Candidates: the next window edge of any profile and the next midnight in
    wall-clock time, and the next UTC-offset change. Until that change the
    offset is constant, so a wall time maps back by subtracting it.
    """
    cdef int64_t off = tz_offset(d, inst)
    cdef int64_t local = inst + off
    cdef int64_t day = floordiv(local, 86400)
    cdef int64_t sod = local - day * 86400
    cdef int64_t best = 86400
    cdef uint32_t w
    cdef int64_t e
    for w in range(d.h.n_windows):
        e = d.windows[w].start
        if sod < e < best:
            best = e
        e = d.windows[w].end
        if sod < e < best:
            best = e
    cdef int64_t cand = day * 86400 + best - off
    cdef int64_t nt = next_transition(d, inst)
    return cand if cand < nt else nt


# ---------------------------------------------------------------- lookup

cdef inline int normalise(const uint8_t* s, Py_ssize_t n, const uint8_t* tp, Py_ssize_t tplen,
                          uint8_t* out, bint padded) noexcept nogil:
    """Digits (0..9 values) of a raw number into out; their count, or -1 if not a number.

    The same rules as rater.numbers.normalise_number. ``padded``: the number
    ends at its first NUL byte (numpy bytes arrays pad with them); otherwise a
    NUL is just a character that is not a digit.
    """
    cdef uint8_t tmp[MAX_RAW]
    cdef Py_ssize_t i, k = 0, j = 0
    cdef uint8_t c
    for i in range(n):
        c = s[i]
        if c == 0 and padded:
            break
        if c == 32 or c == 9 or c == 45 or c == 46 or c == 40 or c == 41:   # ' ' \t - . ( )
            continue
        if k == MAX_RAW:
            return -1
        tmp[k] = c
        k += 1
    if tplen and k >= tplen and memcmp(tmp, tp, tplen) == 0:
        j = tplen
    if j < k and tmp[j] == 43:          # '+'
        j += 1
    elif j + 1 < k and tmp[j] == 48 and tmp[j + 1] == 48:   # '00'
        j += 2
    if k - j < 1 or k - j > MAX_DIGITS:
        return -1
    for i in range(j, k):
        c = tmp[i] - 48
        if c > 9:
            return -1
        out[i - j] = c
    return <int>(k - j)


cdef inline int digits_of_u64(uint64_t v, uint8_t* out) noexcept nogil:
    cdef uint8_t tmp[24]
    cdef int n = 0, i
    if v == 0:
        return -1
    while v:
        tmp[n] = v % 10
        v //= 10
        n += 1
    for i in range(n):
        out[i] = tmp[n - 1 - i]
    return n


cdef inline int64_t select_row(const Deck* d, const Node* nd, int64_t t_eff, int64_t t_prof,
                               int64_t* local) noexcept nogil:
    """The row of one prefix in force, or -1; local caches t_prof's wall clock."""
    cdef int64_t best = -1, best_rank = -1
    cdef uint32_t j
    cdef const Row* r
    if nd.nrows & NODE_ALWAYS:
        return nd.rows
    for j in range(nd.rows, nd.rows + (nd.nrows & NODE_NROWS)):
        r = &d.rows[j]
        if t_eff < r.eff_from or t_eff >= r.eff_to:
            continue
        if r.profile >= 0:
            if local[0] == INF:
                local[0] = t_prof + tz_offset(d, t_prof)
            if not profile_active(d, r.profile, local[0]):
                continue
        if r.rank > best_rank:
            best = j
            best_rank = r.rank
    return best


cdef inline void walk_start(Walk* w) noexcept nogil:
    w.i = 0
    w.node = 0
    w.sp = 0


cdef inline bint walk_step(const Deck* d, Walk* w) noexcept nogil:
    """Take one step down the trie; False once the walk is over.

    Nodes with rows are stacked as candidates. The next node and the
    candidate's rows are prefetched, so that walks interleaved over a group of
    calls (the batch paths) wait for memory together rather than in turn.
    """
    cdef const Node* nd = &d.nodes[w.node]
    if w.i and nd.nrows:
        w.stack_node[w.sp] = w.node
        w.stack_len[w.sp] = <uint8_t>w.i
        w.sp += 1
        if not nd.nrows & NODE_ALWAYS:      # its rows will be read to choose one
            rt_prefetch(&d.rows[nd.rows])
    if w.i >= w.n:
        return False
    cdef uint8_t dg = w.digits[w.i]
    cdef uint16_t m = nd.mask
    if not (m >> dg) & 1:
        return False
    w.node = nd.first_child + POPCOUNT[m & ((1u << dg) - 1)]
    rt_prefetch(&d.nodes[w.node])
    w.i += 1
    return True


cdef inline int64_t walk_resolve(const Deck* d, Walk* w, int64_t t_eff, int64_t t_prof,
                                 int* plen) noexcept nogil:
    """The deepest candidate with a row in force: the row's index and prefix length, or -1."""
    cdef int64_t local = INF
    cdef int64_t r
    cdef int sp = w.sp
    while sp:
        sp -= 1
        r = select_row(d, &d.nodes[w.stack_node[sp]], t_eff, t_prof, &local)
        if r >= 0:
            plen[0] = w.stack_len[sp]
            return r
    plen[0] = 0
    return -1


cdef int64_t find_row(const Deck* d, const uint8_t* digits, int n, int64_t t_eff, int64_t t_prof,
                      int* plen) noexcept nogil:
    """Longest prefix with a row in force; the row's index and the prefix length, or -1."""
    cdef Walk w
    if n > MAX_DIGITS:
        n = MAX_DIGITS
    memcpy(w.digits, digits, n)
    w.n = n
    walk_start(&w)
    while walk_step(d, &w):
        pass
    return walk_resolve(d, &w, t_eff, t_prof, plen)


cdef void walk_group(const Deck* d, Walk* lanes, int g) noexcept nogil:
    """Walk g lanes down the trie in lock step (lanes with n < 0 are skipped)."""
    cdef bint active[LANES]
    cdef int k, live = 0
    for k in range(g):
        walk_start(&lanes[k])
        active[k] = lanes[k].n >= 0
        live += active[k]
    while live:
        for k in range(g):
            if active[k] and not walk_step(d, &lanes[k]):
                active[k] = False
                live -= 1


cdef void resolve_group(const Deck* d, Walk* lanes, int g, const int64_t* at, int64_t* found,
                        int* plen, bint pricing) noexcept nogil:
    """Each walked lane's row in force at its instant (-1 if none, or if not walked).

    With ``pricing``, the rows and then their tiers are prefetched for the
    pricing that follows, again so that the lanes wait for memory together.
    """
    cdef int k
    for k in range(g):
        found[k] = -1
        plen[k] = 0
        if lanes[k].n >= 0:
            found[k] = walk_resolve(d, &lanes[k], at[k], at[k], &plen[k])
            if pricing and found[k] >= 0:
                rt_prefetch(&d.rows[found[k]])
    if pricing:
        for k in range(g):
            if found[k] >= 0:
                rt_prefetch(&d.tiers[d.rows[found[k]].tier_start])


# ---------------------------------------------------------------- pricing

cdef inline rt_i128 round_div(rt_i128 num, rt_i128 den, int method) noexcept nogil:
    cdef rt_i128 q = num // den
    cdef rt_i128 r = num - q * den
    if r == 0 or method == ROUND_DOWN:
        return q
    if method == ROUND_UP:
        return q + 1
    if method == ROUND_HALF_UP:
        return q + 1 if 2 * r >= den else q
    if 2 * r > den:
        return q + 1
    if 2 * r == den:
        return q + (q & 1)
    return q


cdef inline void record_charge(Charges* c, int64_t row, uint32_t tier, int64_t from_s,
                               int64_t increments) noexcept nogil:
    if c.n and c.items[c.n - 1].row == row and c.items[c.n - 1].tier == tier:
        c.items[c.n - 1].increments += increments
    elif c.n < c.cap:
        c.items[c.n].row = row
        c.items[c.n].tier = tier
        c.items[c.n].from_s = from_s
        c.items[c.n].increments = increments
        c.n += 1
    else:
        c.truncated = True


cdef int64_t next_cut(const Deck* d, const uint8_t* digits, int n, int64_t start,
                      int64_t t, int64_t r, int64_t r0, int64_t until,
                      int64_t* next_row) noexcept nogil:
    """Cut mode: the first call second after t, before until, where the call is cut (the
    row in force changes, or it is midnight on the wall clock), or INF; next_row: the row
    from there."""
    cdef int64_t b = start + t, rr, local
    cdef int pl
    while True:
        b = next_boundary(d, b)
        if b - start >= until:
            return INF
        rr = find_row(d, digits, n, start, b, &pl)
        if rr < 0:
            rr = r0
        local = b + tz_offset(d, b)
        if rr != r or floordiv(local, 86400) * 86400 == local:
            next_row[0] = rr
            return b - start


cdef int64_t price_row(const Deck* d, const uint8_t* digits, int n, int64_t start,
                       int64_t r0, int64_t duration, int64_t* billed,
                       Charges* charges) noexcept nogil:
    """Cost in nanos of a call whose start row is r0 (a Status if negative).

    With ``charges``, each stretch billed by one tier of one row is recorded too.
    """
    cdef const Row* row = &d.rows[r0]
    if duration <= 0 or duration <= row.grace:
        billed[0] = 0
        return 0
    cdef int64_t dd = duration if duration > row.min_duration else row.min_duration
    cdef int64_t t = 0, seg_end = INF, lim, tier_end, cnt, inc
    cdef int64_t over = 0           # cut mode: seconds billed past the ends of parts
    cdef int64_t r = r0, rr, nr = r0
    cdef rt_i128 num = 0
    cdef uint32_t k, last
    cdef const Row* cur
    cdef int pl
    if d.cut:
        seg_end = next_cut(d, digits, n, start, 0, r0, r0, dd, &nr)
    elif d.split:
        seg_end = next_boundary(d, start) - start
    while t < dd:
        if t >= seg_end:
            if d.cut:
                r = nr
                seg_end = next_cut(d, digits, n, start, t, r, r0, dd, &nr)
            else:
                rr = find_row(d, digits, n, start, start + t, &pl)
                r = rr if rr >= 0 else r0
                seg_end = next_boundary(d, start + t) - start
        cur = &d.rows[r]
        last = cur.tier_start + cur.tier_count - 1
        k = last
        while d.tiers[k].from_s > t:
            k -= 1
        tier_end = d.tiers[k + 1].from_s if k < last else INF
        lim = dd
        if seg_end < lim:
            lim = seg_end
        if tier_end < lim:
            lim = tier_end
        inc = d.tiers[k].increment
        cnt = (lim - t + inc - 1) // inc
        num += <rt_i128>d.tiers[k].price * (cnt * inc) * d.tiers[k].factor
        if charges != NULL:
            record_charge(charges, r, k, t, cnt)
        t += cnt * inc
        if d.cut and t > seg_end:   # the part's last increment is billed whole; the next
            over += t - seg_end     # part starts where the call was cut
            t = seg_end
    billed[0] = t + over
    num += <rt_i128>row.connect_fee * d.h.denominator
    cdef int64_t q = POW10[9 - row.decimals]
    cdef rt_i128 cost = round_div(num, <rt_i128>q * d.h.denominator, row.method) * q
    if row.cap >= 0 and cost > row.cap:
        cost = row.cap
    if cost > INF:
        return ST_OVERFLOW
    return <int64_t>cost


cdef inline int64_t call_status(int n, int64_t start, int64_t duration) noexcept nogil:
    """0 for a call that can be priced, else the Status that says why not."""
    if n < 0:
        return ST_BAD_NUMBER
    if duration < 0 or duration > MAX_SECONDS or start < 0 or start >= END_INSTANT:
        return ST_BAD_CALL
    return 0


cdef inline int64_t price_call(const Deck* d, const uint8_t* digits, int n, int64_t start,
                               int64_t duration, int64_t* billed, int64_t* row,
                               int* plen, Charges* charges) noexcept nogil:
    """One call: the status or cost; what priced it in row and plen (charges: how, or NULL)."""
    cdef int64_t status = call_status(n, start, duration)
    if status:
        row[0] = -1
        plen[0] = 0
        billed[0] = 0
        return status
    row[0] = find_row(d, digits, n, start, start, plen)
    if row[0] < 0:
        billed[0] = 0
        return ST_UNMATCHED
    return price_row(d, digits, n, start, row[0], duration, billed, charges)


cdef int64_t max_duration_row(const Deck* d, const uint8_t* digits, int n, int64_t start,
                              int64_t r0, int64_t amount, int64_t limit) noexcept nogil:
    """Longest duration <= limit costing at most amount. Cost grows with duration."""
    cdef int64_t billed, lo = 0, hi = limit, mid, c
    if amount < 0:
        return 0
    c = price_row(d, digits, n, start, r0, limit, &billed, NULL)
    if 0 <= c <= amount:
        return limit
    while hi - lo > 1:     # cost(lo) <= amount < cost(hi)
        mid = lo + (hi - lo) // 2
        c = price_row(d, digits, n, start, r0, mid, &billed, NULL)
        if 0 <= c <= amount:
            lo = mid
        else:
            hi = mid
    return lo


# ---------------------------------------------------------------- CDR text

cdef inline int parse_uint(const uint8_t* s, Py_ssize_t n, int64_t* out) noexcept nogil:
    cdef Py_ssize_t i = 0
    cdef int64_t v = 0
    while n and (s[n - 1] == 32 or s[n - 1] == 9):
        n -= 1
    while i < n and (s[i] == 32 or s[i] == 9):
        i += 1
    if i == n or n - i > 18:
        return -1
    while i < n:
        if s[i] < 48 or s[i] > 57:
            return -1
        v = v * 10 + (s[i] - 48)
        i += 1
    out[0] = v
    return 0


cdef inline int two(const uint8_t* s) noexcept nogil:
    if s[0] < 48 or s[0] > 57 or s[1] < 48 or s[1] > 57:
        return -1
    return (s[0] - 48) * 10 + (s[1] - 48)


cdef inline int is_leap(int64_t y) noexcept nogil:
    return (y % 4 == 0 and y % 100 != 0) or y % 400 == 0


cdef int read_instant(const Deck* d, const uint8_t* s, Py_ssize_t n, int64_t* out) noexcept nogil:
    """The same grammar as rater.timeutil.parse_instant; 0, or -1 if unreadable."""
    cdef int64_t v
    cdef Py_ssize_t i = 0
    while n and (s[n - 1] == 32 or s[n - 1] == 9):
        n -= 1
    while i < n and (s[i] == 32 or s[i] == 9):
        s += 1
        n -= 1
    if n == 0:
        return -1
    if parse_uint(s, n, &v) == 0:
        if v >= END_INSTANT:
            return -1
        out[0] = v
        return 0
    if n < 10 or s[4] != 45 or s[7] != 45:
        return -1
    cdef int y1 = two(s), y2 = two(s + 2), mo = two(s + 5), dy = two(s + 8)
    if y1 < 0 or y2 < 0 or mo < 0 or dy < 0:
        return -1
    cdef int64_t y = y1 * 100 + y2
    cdef int hh = 0, mi = 0, ss = 0, oh, om, sign = 0
    cdef int64_t zone_off = 0
    cdef int mdays
    i = 10
    if n > 10:
        if (s[10] != 84 and s[10] != 32) or n < 16 or s[13] != 58:
            return -1
        hh = two(s + 11)
        mi = two(s + 14)
        if hh < 0 or mi < 0:
            return -1
        i = 16
        if i < n and s[i] == 58:
            if n < 19:
                return -1
            ss = two(s + 17)
            if ss < 0:
                return -1
            i = 19
            if i < n and (s[i] == 46 or s[i] == 44):
                i += 1
                if i == n or s[i] < 48 or s[i] > 57:
                    return -1
                while i < n and 48 <= s[i] <= 57:
                    i += 1
        if i < n:
            if s[i] == 90 and i + 1 == n:               # Z
                sign = 1
            elif s[i] == 43 or s[i] == 45:              # + -
                sign = 1 if s[i] == 43 else -1
                if i + 3 > n:
                    return -1
                oh = two(s + i + 1)
                om = 0
                i += 3
                if i < n:
                    if s[i] == 58:
                        i += 1
                    if i + 2 != n:
                        return -1
                    om = two(s + i)
                elif i != n:
                    return -1
                if oh < 0 or om < 0 or oh > 23 or om > 59:
                    return -1
                zone_off = sign * (oh * 3600 + om * 60)
            else:
                return -1
    if mo < 1 or mo > 12 or dy < 1 or hh > 23 or mi > 59 or ss > 59 or y < 1:
        return -1
    if mo == 2:
        mdays = 29 if is_leap(y) else 28
    elif mo == 4 or mo == 6 or mo == 9 or mo == 11:
        mdays = 30
    else:
        mdays = 31
    if dy > mdays:
        return -1
    cdef int64_t wall = days_from_civil(y, mo, dy) * 86400 + hh * 3600 + mi * 60 + ss
    cdef int64_t t
    if sign:
        t = wall - zone_off
    else:
        if wall < -86400 or wall > END_INSTANT + 86400:
            return -1
        t = wall_to_utc(d, wall)
    if t < 0 or t >= END_INSTANT:
        return -1
    out[0] = t
    return 0


ctypedef struct Field:
    const uint8_t* p
    Py_ssize_t n
    int escaped         # quoted with "" inside, or text after the closing quote: needs a copy
    const uint8_t* tail # text after the closing quote, which Python's csv module keeps
    Py_ssize_t tail_n


cdef inline Py_ssize_t split_record(const uint8_t* s, Py_ssize_t pos, Py_ssize_t end,
                                    Field* fields, int nfields, int* count,
                                    int64_t* newlines) noexcept nogil:
    """Split one CSV record starting at pos into up to nfields fields.

    Returns the position after the record's line end, or -1 for an
    unterminated quote. Fields past nfields are skipped; count gets how many
    fields the record has (capped at nfields + 1).
    """
    cdef int f = 0
    cdef Py_ssize_t i = pos, a
    cdef uint8_t c
    cdef int escaped
    while True:
        escaped = 0
        if i < end and s[i] == 34:          # quoted field
            i += 1
            a = i
            while True:
                if i >= end:
                    return -1
                c = s[i]
                if c == 34:
                    if i + 1 < end and s[i + 1] == 34:
                        escaped = 1
                        i += 2
                        continue
                    break
                if c == 10:
                    newlines[0] += 1
                i += 1
            if f < nfields:
                fields[f].p = s + a
                fields[f].n = i - a
                fields[f].escaped = escaped
            i += 1                          # closing quote
            a = i
            while i < end and s[i] != 44 and s[i] != 10 and s[i] != 13:
                i += 1                      # text after it belongs to the field, as in csv
            if f < nfields:
                fields[f].tail = s + a
                fields[f].tail_n = i - a
                if i > a:
                    fields[f].escaped = 1
        else:
            a = i
            while i < end and s[i] != 44 and s[i] != 10 and s[i] != 13:
                i += 1
            if f < nfields:
                fields[f].p = s + a
                fields[f].n = i - a
                fields[f].escaped = 0
                fields[f].tail_n = 0
        if f <= nfields:
            f += 1
        if i < end and s[i] == 44:
            i += 1
            continue
        break
    count[0] = f
    if i < end and s[i] == 13:
        i += 1
    if i < end and s[i] == 10:
        i += 1
    newlines[0] += 1
    return i


cdef inline Py_ssize_t unescape(const Field* f, uint8_t* buf) noexcept nogil:
    """A quoted field's text into buf ("" read as "), with any text after its closing quote."""
    cdef Py_ssize_t i = 0, k = 0
    while i < f.n:
        buf[k] = f.p[i]
        k += 1
        i += 2 if f.p[i] == 34 else 1
    memcpy(buf + k, f.tail, f.tail_n)
    return k + f.tail_n


cdef inline uint8_t* put_field(uint8_t* o, const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """Write a CSV field as Python's csv module does with QUOTE_MINIMAL."""
    cdef Py_ssize_t i
    cdef bint quote = False
    for i in range(n):
        if p[i] == 44 or p[i] == 34 or p[i] == 10 or p[i] == 13:
            quote = True
            break
    if not quote:
        memcpy(o, p, n)
        return o + n
    o[0] = 34
    o += 1
    for i in range(n):
        o[0] = p[i]
        o += 1
        if p[i] == 34:
            o[0] = 34
            o += 1
    o[0] = 34
    return o + 1


cdef inline uint8_t* put_int(uint8_t* o, int64_t v) noexcept nogil:
    cdef uint8_t tmp[24]
    cdef int n = 0, i
    if v == 0:
        o[0] = 48
        return o + 1
    while v:
        tmp[n] = 48 + v % 10
        v //= 10
        n += 1
    for i in range(n):
        o[i] = tmp[n - 1 - i]
    return o + n


cdef inline uint8_t* put_amount(uint8_t* o, int64_t nanos, int decimals) noexcept nogil:
    """Nanos with exactly `decimals` places (the cost is already rounded to them)."""
    o = put_int(o, nanos // 1000000000)
    if decimals == 0:
        return o
    o[0] = 46
    o += 1
    cdef int64_t frac = nanos % 1000000000
    cdef int i
    for i in range(decimals):
        o[i] = 48 + (frac // POW10[8 - i]) % 10
    return o + decimals


ctypedef struct CsvSlot:
    # One canonical CDR between reading and writing: its fields, call and price.
    Py_ssize_t start_pos
    int64_t lines_before
    const uint8_t* p[4]         # id, start, number, duration
    Py_ssize_t n[4]
    uint8_t buf[4][1024]        # unescaped copies of quoted fields with "" inside
    int64_t start
    int64_t duration
    int64_t row
    int plen
    int64_t cost
    int64_t billed


cdef inline bint emit(const Deck* d, const CsvSlot* sl, const uint8_t* digits, uint8_t* o,
                      Py_ssize_t cap, Py_ssize_t* o_pos) noexcept nogil:
    """Write one rated record as a CSV line; False (nothing written) if it does not fit."""
    cdef Py_ssize_t need = 16, a = 0, b = 0
    cdef int f
    for f in range(4):
        need += 2 * sl.n[f] + 3
    if sl.cost >= 0:
        a = d.dest_index[d.rows[sl.row].dest]
        b = d.dest_index[d.rows[sl.row].dest + 1]
        need += 2 * (b - a) + 3 + sl.plen + 64
    if o_pos[0] + need > cap:
        return False
    cdef uint8_t* w = o + o_pos[0]
    for f in range(4):
        w = put_field(w, sl.p[f], sl.n[f])
        w[0] = 44
        w += 1
    if sl.cost >= 0:
        for f in range(sl.plen):
            w[f] = 48 + digits[f]
        w += sl.plen
        w[0] = 44
        w = put_field(w + 1, <const uint8_t*>d.dest_bytes + a, b - a)
        w[0] = 44
        w = put_int(w + 1, sl.billed)
        w[0] = 44
        w = put_amount(w + 1, sl.cost, d.rows[sl.row].decimals)
    else:
        w[0] = 44
        w[1] = 44
        w[2] = 44
        w += 3
    w[0] = 10
    o_pos[0] = w + 1 - o
    return True


# ---------------------------------------------------------------- the Python face

cdef inline int load_digits(object number, uint8_t* out, const uint8_t* tp, Py_ssize_t tplen) except -2:
    cdef const uint8_t[::1] b
    if isinstance(number, int):
        if number <= 0 or number >= 10**19:
            return -1
        return digits_of_u64(<uint64_t>number, out)
    if isinstance(number, str):
        number = (<str>number).encode("utf-8", "surrogateescape")
    b = number
    return normalise(&b[0] if b.shape[0] else <const uint8_t*>b"", b.shape[0], tp, tplen, out,
                     False)


cdef class Engine:
    """One compiled deck, read in place from a buffer the caller keeps valid."""

    cdef Deck deck
    cdef object _owner          # keeps whatever guards the buffer (an LMDB transaction) alive
    cdef const uint8_t[::1] _view

    def __cinit__(self, object buffer, object owner=None):
        self._view = buffer
        self._owner = owner
        cdef Py_ssize_t size = self._view.shape[0]
        if size < <Py_ssize_t>sizeof(DeckHeader):
            raise ValueError(f"compiled deck of {size} bytes is shorter than its header")
        cdef const uint8_t* base = &self._view[0]
        if (<uintptr_t>base) % 8:
            raise ValueError("compiled deck buffer is not 8-byte aligned")
        cdef const DeckHeader* h = <const DeckHeader*>base
        if memcmp(h.magic, b"RATERDK\0", 8) != 0:
            raise ValueError("not a compiled rater deck (bad magic)")
        if h.format_version != (FORMAT_VERSION_CUT if h.flags & FLAG_CUT else FORMAT_VERSION):
            raise ValueError(f"compiled deck format {h.format_version} (flags {h.flags}); this "
                             f"engine reads format {FORMAT_VERSION}, and {FORMAT_VERSION_CUT} "
                             f"for decks that cut calls")
        if h.flags & ~(FLAG_SPLIT | FLAG_CUT):
            raise ValueError(f"compiled deck flags {h.flags}: this engine knows "
                             f"{FLAG_SPLIT | FLAG_CUT}")
        if h.total_size != <uint64_t>size:
            raise ValueError(f"compiled deck is {size} bytes, its header says {h.total_size}")
        if h.n_nodes < 1 or h.denominator < 1:
            raise ValueError("compiled deck has no root node")
        _section(h.off_nodes, h.n_nodes, sizeof(Node), size, "nodes")
        _section(h.off_rows, h.n_rows, sizeof(Row), size, "rows")
        _section(h.off_tiers, h.n_tiers, sizeof(Tier), size, "tiers")
        _section(h.off_profiles, h.n_profiles, sizeof(Profile), size, "profiles")
        _section(h.off_windows, h.n_windows, sizeof(Window), size, "windows")
        _section(h.off_dates, h.n_dates, sizeof(int32_t), size, "dates")
        _section(h.off_tz_at, h.n_transitions, sizeof(int64_t), size, "tz_at")
        _section(h.off_tz_wall, h.n_transitions, sizeof(int64_t), size, "tz_wall")
        _section(h.off_tz_offset, h.n_transitions + 1, sizeof(int32_t), size, "tz_offset")
        _section(h.off_dest_index, h.n_destinations + 1, sizeof(uint32_t), size, "dest_index")
        _section(h.off_dest_bytes, h.dest_bytes_size, 1, size, "dest_bytes")
        self.deck.h = h
        self.deck.nodes = <const Node*>(base + h.off_nodes)
        self.deck.rows = <const Row*>(base + h.off_rows)
        self.deck.tiers = <const Tier*>(base + h.off_tiers)
        self.deck.profiles = <const Profile*>(base + h.off_profiles)
        self.deck.windows = <const Window*>(base + h.off_windows)
        self.deck.dates = <const int32_t*>(base + h.off_dates)
        self.deck.tz_at = <const int64_t*>(base + h.off_tz_at)
        self.deck.tz_wall = <const int64_t*>(base + h.off_tz_wall)
        self.deck.tz_offset = <const int32_t*>(base + h.off_tz_offset)
        self.deck.dest_index = <const uint32_t*>(base + h.off_dest_index)
        self.deck.dest_bytes = <const char*>(base + h.off_dest_bytes)
        self.deck.cut = (h.flags & FLAG_CUT) != 0
        self.deck.split = (h.flags & FLAG_SPLIT) != 0 and h.n_profiles > 0

    # -- facts

    @property
    def n_rows(self):
        """How many rows the deck has (header() has every count)."""
        return self.deck.h.n_rows

    def destination(self, int64_t row):
        """The destination name of a row."""
        self._check_row(row)
        cdef uint32_t dest = self.deck.rows[row].dest
        cdef uint32_t a = self.deck.dest_index[dest], b = self.deck.dest_index[dest + 1]
        return self.deck.dest_bytes[a:b].decode("utf-8")

    def destination_names(self):
        """Every destination name, in index order."""
        cdef uint32_t i
        return [self.deck.dest_bytes[self.deck.dest_index[i]:self.deck.dest_index[i + 1]].decode("utf-8")
                for i in range(self.deck.h.n_destinations)]

    def row_decimals(self, int64_t row):
        """The decimal places a row's costs are rounded to."""
        self._check_row(row)
        return self.deck.rows[row].decimals

    cdef _check_row(self, int64_t row):
        if not 0 <= row < self.deck.h.n_rows:
            raise IndexError(f"row {row} out of range")

    def validate(self):
        """Check every index of the structure; ValueError naming the first bad one.

        Opening checks only the header and section bounds (constant time);
        this reads the whole deck, as the compiler does before storing it.
        """
        cdef const Deck* d = &self.deck
        cdef uint32_t i, j, children
        cdef const Row* r
        cdef const Profile* p
        for i in range(d.h.n_nodes):
            children = POPCOUNT[d.nodes[i].mask & 1023]
            if d.nodes[i].mask >> 10:
                raise ValueError(f"node {i}: child mask has bits past digit 9")
            if children and (d.nodes[i].first_child <= i
                             or <uint64_t>d.nodes[i].first_child + children > d.h.n_nodes):
                raise ValueError(f"node {i}: children out of range")
            if <uint64_t>d.nodes[i].rows + (d.nodes[i].nrows & NODE_NROWS) > d.h.n_rows:
                raise ValueError(f"node {i}: rows out of range")
            if d.nodes[i].nrows & NODE_ALWAYS:
                r = &d.rows[d.nodes[i].rows]
                if (d.nodes[i].nrows & NODE_NROWS) != 1 or r.profile != -1 \
                        or r.eff_from != -INF - 1 or r.eff_to != INF:
                    raise ValueError(f"node {i}: marked always-in-force but is not")
        for i in range(d.h.n_rows):
            r = &d.rows[i]
            if r.tier_count < 1 or <uint64_t>r.tier_start + r.tier_count > d.h.n_tiers:
                raise ValueError(f"row {i}: tiers out of range")
            if d.tiers[r.tier_start].from_s != 0:
                raise ValueError(f"row {i}: first tier does not start at 0")
            for j in range(r.tier_start, r.tier_start + r.tier_count):
                if d.tiers[j].increment < 1 or d.tiers[j].factor < 1:
                    raise ValueError(f"row {i}: tier {j} has no increment")
                if j > r.tier_start and d.tiers[j].from_s <= d.tiers[j - 1].from_s:
                    raise ValueError(f"row {i}: tiers out of order")
            if r.dest >= d.h.n_destinations:
                raise ValueError(f"row {i}: destination out of range")
            if r.profile >= <int32_t>d.h.n_profiles or r.profile < -1:
                raise ValueError(f"row {i}: profile out of range")
            if r.decimals > 9 or r.method > 3:
                raise ValueError(f"row {i}: bad rounding rule")
        for i in range(d.h.n_profiles):
            p = &d.profiles[i]
            if <uint64_t>p.win_start + p.win_count > d.h.n_windows or \
                    <uint64_t>p.date_start + p.date_count > d.h.n_dates:
                raise ValueError(f"profile {i}: windows or dates out of range")
        for i in range(d.h.n_destinations):
            if d.dest_index[i] > d.dest_index[i + 1] or d.dest_index[i + 1] > d.h.dest_bytes_size:
                raise ValueError(f"destination {i}: out of range")

    # -- single calls: plain integers in and out

    def lookup(self, number, int64_t at, bytes tech_prefix=b""):
        """(row, prefix_len) of the row in force for a number at an instant; row -1 if none."""
        cdef uint8_t digits[MAX_DIGITS]
        cdef int n = load_digits(number, digits, tech_prefix, len(tech_prefix))
        cdef int plen = 0
        if n < 0:
            return (ST_BAD_NUMBER, 0)
        return (find_row(&self.deck, digits, n, at, at, &plen), plen)

    def rate(self, number, int64_t start, int64_t duration, bytes tech_prefix=b""):
        """(cost_nanos, billed_seconds, row, prefix_len) of one call.

        number is an int (E.164 digits) or a str/bytes to normalise. A
        negative cost is a Status: -1 unmatched, -2 not a number, -3 bad
        call, -4 overflow.
        """
        cdef uint8_t digits[MAX_DIGITS]
        cdef int n = load_digits(number, digits, tech_prefix, len(tech_prefix))
        cdef int64_t billed, row
        cdef int plen
        cdef int64_t cost = price_call(&self.deck, digits, n, start, duration, &billed, &row,
                                       &plen, NULL)
        return (cost, billed, row, plen)

    def charges(self, number, int64_t start, int64_t duration, bytes tech_prefix=b""):
        """How one call is billed: (cost, billed, row, prefix_len, stretches, truncated).

        Each stretch is (row, tier, from_second, increments): consecutive
        increments billed by one tier of one row. At most 1024 are listed;
        truncated says whether there were more.
        """
        cdef uint8_t digits[MAX_DIGITS]
        cdef int n = load_digits(number, digits, tech_prefix, len(tech_prefix))
        cdef int64_t billed = 0, row
        cdef int plen
        cdef Charge items[1024]
        cdef Charges charges
        charges.items = items
        charges.n = 0
        charges.cap = 1024
        charges.truncated = False
        cdef int64_t cost = price_call(&self.deck, digits, n, start, duration, &billed, &row,
                                       &plen, &charges)
        return (cost, billed, row, plen,
                [(items[i].row, items[i].tier, items[i].from_s, items[i].increments)
                 for i in range(charges.n)], bool(charges.truncated))

    def row_info(self, int64_t row):
        """A row's compiled fields, money in nanos (for explanations and checks)."""
        self._check_row(row)
        cdef const Row* r = &self.deck.rows[row]
        return {"eff_from": r.eff_from, "eff_to": r.eff_to, "connect_fee": r.connect_fee,
                "cap": r.cap, "min_duration": r.min_duration, "grace": r.grace,
                "profile": r.profile, "decimals": r.decimals, "method": r.method,
                "destination": self.destination(row), "tier_start": r.tier_start,
                "tier_count": r.tier_count}

    def tier_info(self, uint32_t tier):
        """(from_second, price_nanos, unit, increment) of one compiled tier."""
        if tier >= self.deck.h.n_tiers:
            raise IndexError(f"tier {tier} out of range")
        cdef const Tier* t = &self.deck.tiers[tier]
        return (t.from_s, t.price, t.unit, t.increment)

    def max_duration(self, number, int64_t start, int64_t amount, int64_t limit,
                     bytes tech_prefix=b""):
        """(seconds, row): the longest call up to limit costing at most amount nanos."""
        cdef uint8_t digits[MAX_DIGITS]
        cdef int n = load_digits(number, digits, tech_prefix, len(tech_prefix))
        cdef int plen
        cdef int64_t status = call_status(n, start, limit)
        if status:
            return (0, status)
        cdef int64_t row = find_row(&self.deck, digits, n, start, start, &plen)
        if row < 0:
            return (0, ST_UNMATCHED)
        return (max_duration_row(&self.deck, digits, n, start, row, amount, limit), row)

    # -- batches: numpy arrays (any buffer) in and out, without the GIL

    def rate_batch(self, numbers, const int64_t[::1] starts, const int64_t[::1] durations,
                   int64_t[::1] cost, int64_t[::1] billed, int32_t[::1] row, int8_t[::1] plen,
                   bytes tech_prefix=b""):
        """Rate n calls. numbers: uint64 array, or a 2-D uint8 array of raw bytes per call.

        Writes cost (nanos, or a negative Status), billed seconds, row (-1 if
        none) and matched prefix length. Returns how many were priced.
        """
        cdef Py_ssize_t n = starts.shape[0], i, base
        if durations.shape[0] != n or cost.shape[0] != n or billed.shape[0] != n \
                or row.shape[0] != n or plen.shape[0] != n:
            raise ValueError("rate_batch: arrays differ in length")
        cdef const uint64_t[::1] nums64
        cdef const uint8_t[:, ::1] raw
        cdef bint is_raw = getattr(numbers, "ndim", 1) == 2
        if is_raw:
            raw = numbers
            if raw.shape[0] != n or raw.shape[1] < 1:
                raise ValueError("rate_batch: arrays differ in length")
        else:
            nums64 = numbers
            if nums64.shape[0] != n:
                raise ValueError("rate_batch: arrays differ in length")
        cdef const uint8_t* tp = tech_prefix
        cdef Py_ssize_t tplen = len(tech_prefix)
        cdef Py_ssize_t priced = 0, width = raw.shape[1] if is_raw else 0
        cdef Walk lanes[LANES]
        cdef int64_t status[LANES]
        cdef int64_t found[LANES]
        cdef int pl[LANES]
        cdef int g, k
        cdef int64_t b, c
        cdef const Deck* d = &self.deck
        with nogil:
            base = 0
            while base < n:
                g = LANES if n - base > LANES else <int>(n - base)
                for k in range(g):
                    i = base + k
                    if is_raw:
                        lanes[k].n = normalise(&raw[i, 0], width, tp, tplen, lanes[k].digits,
                                               True)
                    else:
                        lanes[k].n = digits_of_u64(nums64[i], lanes[k].digits)
                    status[k] = call_status(lanes[k].n, starts[i], durations[i])
                    if status[k]:
                        lanes[k].n = -1
                walk_group(d, lanes, g)
                resolve_group(d, lanes, g, &starts[base], found, pl, True)
                for k in range(g):
                    i = base + k
                    b = 0
                    if status[k]:
                        c = status[k]
                    elif found[k] < 0:
                        c = ST_UNMATCHED
                    else:
                        c = price_row(d, lanes[k].digits, lanes[k].n, starts[i], found[k],
                                      durations[i], &b, NULL)
                    cost[i] = c
                    billed[i] = b
                    row[i] = <int32_t>found[k]
                    plen[i] = <int8_t>pl[k]
                    if c >= 0:
                        priced += 1
                base += g
        return priced

    def lookup_batch(self, const uint64_t[::1] numbers, const int64_t[::1] at, int32_t[::1] row):
        """Longest-prefix lookups alone: the row in force for each number (-1 if none)."""
        cdef Py_ssize_t n = numbers.shape[0], i, base, found = 0
        if at.shape[0] != n or row.shape[0] != n:
            raise ValueError("lookup_batch: arrays differ in length")
        cdef Walk lanes[LANES]
        cdef int64_t rows[LANES]
        cdef int g, k
        cdef int pl[LANES]
        cdef const Deck* d = &self.deck
        with nogil:
            base = 0
            while base < n:
                g = LANES if n - base > LANES else <int>(n - base)
                for k in range(g):
                    lanes[k].n = digits_of_u64(numbers[base + k], lanes[k].digits)
                walk_group(d, lanes, g)
                resolve_group(d, lanes, g, &at[base], rows, pl, False)
                for k in range(g):
                    row[base + k] = <int32_t>rows[k]
                    if rows[k] >= 0:
                        found += 1
                base += g
        return found

    def parse_instant(self, text):
        """An instant from CDR text in the deck's zone, as the file path reads it; None if bad."""
        cdef const uint8_t[::1] b = text.encode() if isinstance(text, str) else text
        cdef int64_t t
        if b.shape[0] == 0:
            return None
        if read_instant(&self.deck, &b[0], b.shape[0], &t) != 0:
            return None
        return t

    def rate_csv(self, const uint8_t[::1] data, Py_ssize_t pos, Py_ssize_t max_rows,
                 int col_id, int col_start, int col_number, int col_duration, int ncols,
                 bytes tech_prefix, uint8_t[::1] out):
        """Rate canonical CSV records from data[pos:] into out, until max_rows or out is full.

        Returns (pos, records, rated, unmatched, lines, cost_hi, cost_lo,
        written, error, error_pos): pos and lines (physical lines consumed) are
        where the next call starts; error is 0, or 1 too few columns, 2 bad
        start, 3 bad duration, 4 unterminated quote, 5 field too long, and then
        error_pos is where the bad record starts (and pos too).
        """
        if ncols < 1 or ncols > 64 or not (0 <= col_id < ncols and 0 <= col_start < ncols
                                           and 0 <= col_number < ncols
                                           and 0 <= col_duration < ncols):
            raise ValueError("rate_csv: columns out of range")
        cdef CsvSlot* slots = <CsvSlot*>malloc(LANES * sizeof(CsvSlot))
        if slots == NULL:
            raise MemoryError()
        cdef Py_ssize_t end = data.shape[0], cap = out.shape[0], o_pos = 0
        cdef const uint8_t* s = &data[0] if end else NULL
        cdef uint8_t* o = &out[0] if cap else NULL
        cdef int want[4]
        want[0] = col_id
        want[1] = col_start
        want[2] = col_number
        want[3] = col_duration
        cdef Field fields[64]
        cdef Walk lanes[LANES]
        cdef int64_t starts[LANES]
        cdef int64_t rows[LANES]
        cdef int pl[LANES]
        cdef int g, k, f, count, error = 0
        cdef int64_t lines = 0
        cdef Py_ssize_t records = 0, rated = 0, unmatched = 0, nxt, err_pos = -1
        cdef rt_i128 total = 0
        cdef const uint8_t* tp = tech_prefix
        cdef Py_ssize_t tplen = len(tech_prefix)
        cdef const Deck* d = &self.deck
        cdef CsvSlot* sl
        try:
            with nogil:
                while pos < end and records < max_rows and not error:
                    # 1. Read up to LANES records.
                    g = 0
                    while g < LANES and pos < end and records + g < max_rows:
                        if s[pos] == 10 or s[pos] == 13:         # a blank line
                            pos += 2 if (s[pos] == 13 and pos + 1 < end
                                         and s[pos + 1] == 10) else 1
                            lines += 1
                            continue
                        sl = &slots[g]
                        sl.start_pos = pos
                        sl.lines_before = lines
                        nxt = split_record(s, pos, end, fields, ncols, &count, &lines)
                        error = 4 if nxt < 0 else (1 if count < ncols else 0)
                        for f in range(4):
                            if error:
                                break
                            if fields[want[f]].escaped:
                                if fields[want[f]].n + fields[want[f]].tail_n > 1024:
                                    error = 5
                                    break
                                sl.n[f] = unescape(&fields[want[f]], sl.buf[f])
                                sl.p[f] = sl.buf[f]
                            else:
                                sl.p[f] = fields[want[f]].p
                                sl.n[f] = fields[want[f]].n
                        if not error and read_instant(d, sl.p[1], sl.n[1], &sl.start) != 0:
                            error = 2
                        if not error and (parse_uint(sl.p[3], sl.n[3], &sl.duration) != 0
                                          or sl.duration > MAX_SECONDS):
                            error = 3
                        if error:
                            err_pos = pos
                            lines = sl.lines_before
                            break
                        lanes[g].n = normalise(sl.p[2], sl.n[2], tp, tplen, lanes[g].digits,
                                               False)
                        pos = nxt
                        g += 1
                    # 2. Price them, their trie walks interleaved.
                    walk_group(d, lanes, g)
                    for k in range(g):
                        starts[k] = slots[k].start
                    resolve_group(d, lanes, g, starts, rows, pl, True)
                    for k in range(g):
                        sl = &slots[k]
                        sl.row = rows[k]
                        sl.plen = pl[k]
                        sl.cost = ST_UNMATCHED if sl.row < 0 else price_row(
                            d, lanes[k].digits, lanes[k].n, sl.start, sl.row, sl.duration,
                            &sl.billed, NULL)
                    # 3. Write them while they fit; the rest is read again next time.
                    for k in range(g):
                        sl = &slots[k]
                        if not emit(d, sl, lanes[k].digits, o, cap, &o_pos):
                            pos = sl.start_pos
                            lines = sl.lines_before
                            if error:                  # the bad record waits its turn
                                error = 0
                                err_pos = -1
                            max_rows = records         # stop here
                            break
                        records += 1
                        if sl.cost >= 0:
                            total += sl.cost
                            rated += 1
                        else:
                            unmatched += 1
                    if error:
                        pos = err_pos
        finally:
            free(slots)
        return (pos, records, rated, unmatched, lines, <int64_t>(total >> 64),
                <uint64_t>(total & 0xffffffffffffffff), o_pos, error, err_pos)

    def header(self):
        """The header's counts and section offsets, for zero-copy numpy views of the sections."""
        cdef const DeckHeader* h = self.deck.h
        return {"format_version": h.format_version, "flags": h.flags, "total_size": h.total_size,
                "denominator": h.denominator, "n_nodes": h.n_nodes, "n_rows": h.n_rows,
                "n_tiers": h.n_tiers, "n_profiles": h.n_profiles, "n_windows": h.n_windows,
                "n_dates": h.n_dates, "n_transitions": h.n_transitions,
                "n_destinations": h.n_destinations, "n_prefixes": h.n_prefixes,
                "off_nodes": h.off_nodes, "off_rows": h.off_rows, "off_tiers": h.off_tiers,
                "off_dest_index": h.off_dest_index, "off_dest_bytes": h.off_dest_bytes,
                "dest_bytes_size": h.dest_bytes_size}


cdef _section(uint64_t off, uint64_t count, uint64_t itemsize, Py_ssize_t size, str name):
    if off % 8 or off > <uint64_t>size or count * itemsize > <uint64_t>size - off:
        raise ValueError(f"compiled deck section {name} lies outside the deck")


def address_of(const uint8_t[::1] buffer):
    """Where a buffer's bytes start in memory (0 for an empty one)."""
    return <uintptr_t>&buffer[0] if buffer.shape[0] else 0


def build_trie(list prefixes):
    """The breadth-first trie of distinct digit prefixes (a list of bytes).

    Returns (nodes, ends): the Node records as a bytearray, rows still unset,
    and for each prefix the index of its node as a bytearray of uint32.
    """
    cdef Py_ssize_t n = len(prefixes), i, j, total = 1
    cdef bytes p
    for i in range(n):
        total += len(<bytes>prefixes[i])
    cdef int32_t* child = <int32_t*>calloc(total * 10, sizeof(int32_t))
    cdef int32_t* order = <int32_t*>calloc(total, sizeof(int32_t))
    cdef int32_t* newidx = <int32_t*>calloc(total, sizeof(int32_t))
    cdef uint32_t* tmp_ends = <uint32_t*>calloc(n + 1, sizeof(uint32_t))
    if child == NULL or order == NULL or newidx == NULL or tmp_ends == NULL:
        free(child); free(order); free(newidx); free(tmp_ends)
        raise MemoryError()
    cdef int32_t m = 1, node, c
    cdef const unsigned char* s
    cdef Py_ssize_t L, head, tail
    cdef Node* out
    cdef uint32_t* out_ends
    try:
        for i in range(n):
            p = prefixes[i]
            s = p
            L = len(p)
            node = 0
            for j in range(L):
                c = s[j] - 48
                if c < 0 or c > 9:
                    raise ValueError(f"prefix {p!r} is not digits")
                if child[node * 10 + c] == 0:
                    child[node * 10 + c] = m
                    m += 1
                node = child[node * 10 + c]
            tmp_ends[i] = node
        nodes = bytearray(m * sizeof(Node))
        ends = bytearray(n * sizeof(uint32_t))
        out = <Node*><char*>nodes
        out_ends = <uint32_t*><char*>ends
        # Breadth first: a node's children are queued together, in digit order.
        head = 0
        tail = 1
        order[0] = 0
        while head < tail:
            node = order[head]
            newidx[node] = head
            out[head].mask = 0
            out[head].first_child = tail
            out[head].nrows = 0
            out[head].rows = 0
            for c in range(10):
                if child[node * 10 + c]:
                    out[head].mask |= 1 << c
                    order[tail] = child[node * 10 + c]
                    tail += 1
            if out[head].mask == 0:
                out[head].first_child = 0
            head += 1
        for i in range(n):
            out_ends[i] = newidx[tmp_ends[i]]
        return nodes, ends
    finally:
        free(child)
        free(order)
        free(newidx)
        free(tmp_ends)


def layout():
    """Sizes and field offsets of the C structs, for the format test."""
    cdef DeckHeader h
    cdef Node nd
    cdef Row r
    cdef Tier t
    cdef Profile p
    cdef Window w
    return {
        "DeckHeader": (sizeof(DeckHeader), {
            "format_version": <char*>&h.format_version - <char*>&h,
            "denominator": <char*>&h.denominator - <char*>&h,
            "n_nodes": <char*>&h.n_nodes - <char*>&h,
            "off_nodes": <char*>&h.off_nodes - <char*>&h,
            "dest_bytes_size": <char*>&h.dest_bytes_size - <char*>&h,
            "n_prefixes": <char*>&h.n_prefixes - <char*>&h}),
        "Node": (sizeof(Node), {
            "mask": <char*>&nd.mask - <char*>&nd, "nrows": <char*>&nd.nrows - <char*>&nd,
            "first_child": <char*>&nd.first_child - <char*>&nd,
            "rows": <char*>&nd.rows - <char*>&nd}),
        "Row": (sizeof(Row), {
            "eff_from": <char*>&r.eff_from - <char*>&r, "eff_to": <char*>&r.eff_to - <char*>&r,
            "connect_fee": <char*>&r.connect_fee - <char*>&r, "cap": <char*>&r.cap - <char*>&r,
            "rank": <char*>&r.rank - <char*>&r, "tier_start": <char*>&r.tier_start - <char*>&r,
            "dest": <char*>&r.dest - <char*>&r, "min_duration": <char*>&r.min_duration - <char*>&r,
            "grace": <char*>&r.grace - <char*>&r, "tier_count": <char*>&r.tier_count - <char*>&r,
            "profile": <char*>&r.profile - <char*>&r, "decimals": <char*>&r.decimals - <char*>&r,
            "method": <char*>&r.method - <char*>&r}),
        "Tier": (sizeof(Tier), {
            "price": <char*>&t.price - <char*>&t, "from_s": <char*>&t.from_s - <char*>&t,
            "increment": <char*>&t.increment - <char*>&t, "unit": <char*>&t.unit - <char*>&t,
            "factor": <char*>&t.factor - <char*>&t}),
        "Profile": (sizeof(Profile), {
            "days": <char*>&p.days - <char*>&p, "win_start": <char*>&p.win_start - <char*>&p,
            "win_count": <char*>&p.win_count - <char*>&p,
            "date_start": <char*>&p.date_start - <char*>&p,
            "date_count": <char*>&p.date_count - <char*>&p}),
        "Window": (sizeof(Window), {
            "start": <char*>&w.start - <char*>&w, "end": <char*>&w.end - <char*>&w}),
    }
