/* Causal attention of one (sequence, head) in registers, forward and backward: the body of
   fastops' attention kernels, written once for a real type and included once per type by
   kernels.pxi, which defines before each inclusion
     FA_REAL             float or double
     FA_NAME(x)          the name of this type's copy of x (fastops_s_x, fastops_d_x)
     FA_DOT(x, y, n)     a dot product whose sum may be reordered (vectorised)
     FA_VEXP(x), FA_INT   (optional) e^x on a vector of x <= 0, and the integer as wide as FA_REAL
   and FASTOPS_VEC_BYTES (the widest vector the build may use).

   Every product here is a causal triangle of T x T x hd multiply-adds, cut into tiles of MR
   rows x NV vectors that stay in registers while the sum runs, as the small products of
   kernels.pxi do. Only tiles that touch the triangle are computed (a diagonal tile computes a
   few products above the diagonal whose weights are zero). The operands are first copied into
   a scratch buffer, padded with zeros to whole vectors, so the tiles need no edge cases; T x T
   matrices are kept there too, never the full square in BLAS' calls of four small products.
   The sums over a product's inner index run in order, as plain loops add them. */

typedef FA_REAL FA_NAME(vec) __attribute__((vector_size(FASTOPS_VEC_BYTES)));

enum {
    FA_NAME(LANES) = FASTOPS_VEC_BYTES / sizeof(FA_REAL),
    FA_NAME(MR) = 6,  /* rows of a tile */
    FA_NAME(NV) = 2,  /* vectors of a tile's row: 6 x 2 = 12 sums in 12 of 16 registers */
};

/* acc[r][v] = sum over k in k0..k1-1 of a[r][k] * b[k * ldb + v * LANES], for the MR rows whose
   element k is at arow[r][k * aks] (rows past the tile's end repeat a real row: their sums are
   never stored) and the first nv (1 or NV) vectors of b's row k; the other vectors are zero. */
static inline void FA_NAME(tile_nv)(FA_NAME(vec) acc[FA_NAME(MR)][FA_NAME(NV)],
                                    const FA_REAL* const arow[FA_NAME(MR)], Py_ssize_t aks,
                                    const FA_REAL* b, Py_ssize_t ldb, Py_ssize_t k0,
                                    Py_ssize_t k1, const int nv) {
    enum { MR = FA_NAME(MR), NV = FA_NAME(NV), LANES = FA_NAME(LANES) };
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = (FA_NAME(vec)){0};
    for (Py_ssize_t k = k0; k < k1; k++) {
        FA_NAME(vec) bv[NV];
        for (int v = 0; v < nv; v++)
            __builtin_memcpy(&bv[v], b + k * ldb + v * LANES, sizeof(FA_NAME(vec)));
        for (int r = 0; r < MR; r++) {
            FA_REAL ar = arow[r][k * aks];
            for (int v = 0; v < nv; v++) acc[r][v] += ar * bv[v];
        }
    }
}

/* tile_nv with all NV vectors, or (last) with only the first when the columns past it are all
   above the diagonal: a diagonal tile then does half the multiply-adds. */
static inline void FA_NAME(tile)(FA_NAME(vec) acc[FA_NAME(MR)][FA_NAME(NV)],
                                 const FA_REAL* const arow[FA_NAME(MR)], Py_ssize_t aks,
                                 const FA_REAL* b, Py_ssize_t ldb, Py_ssize_t k0, Py_ssize_t k1) {
    FA_NAME(tile_nv)(acc, arow, aks, b, ldb, k0, k1, FA_NAME(NV));
}

/* Rows r < nr of a tile into out + r * ldo, columns c0..c0 + NV * LANES - 1 cut at width:
   stored, or added to what is there (add). */
static inline void FA_NAME(tile_out)(FA_NAME(vec) acc[FA_NAME(MR)][FA_NAME(NV)], int nr,
                                     FA_REAL* out, Py_ssize_t ldo, Py_ssize_t c0,
                                     Py_ssize_t width, int add) {
    enum { MR = FA_NAME(MR), NV = FA_NAME(NV), LANES = FA_NAME(LANES) };
    FA_REAL res[NV * LANES];
    Py_ssize_t n = width - c0 < NV * LANES ? width - c0 : NV * LANES;
    for (int r = 0; r < nr; r++) {
        FA_REAL* o = out + r * ldo + c0;
        if (n == NV * LANES) {
            for (int v = 0; v < NV; v++) {
                FA_NAME(vec) x = acc[r][v];
                if (add) {
                    FA_NAME(vec) old;
                    __builtin_memcpy(&old, o + v * LANES, sizeof(old));
                    x += old;
                }
                __builtin_memcpy(o + v * LANES, &x, sizeof(x));
            }
        } else {
            __builtin_memcpy(res, acc[r], sizeof(res));
            for (Py_ssize_t c = 0; c < n; c++) o[c] = add ? o[c] + res[c] : res[c];
        }
    }
}

/* The MR row pointers of a tile whose first row is a + i0 * ars, nr of them real. */
static inline void FA_NAME(rows)(const FA_REAL* arow[FA_NAME(MR)], const FA_REAL* a,
                                 Py_ssize_t ars, Py_ssize_t i0, int nr) {
    for (int r = 0; r < FA_NAME(MR); r++) arow[r] = a + (i0 + (r < nr ? r : 0)) * ars;
}

/* dst (rows x width, row stride ldd) = src (rows x n, row stride lds), zeros in columns n..;
   transposed (dst's row d = src's column d) when transpose. */
static inline void FA_NAME(pack)(FA_REAL* dst, Py_ssize_t ldd, const FA_REAL* src,
                                 Py_ssize_t lds, Py_ssize_t rows, Py_ssize_t n,
                                 Py_ssize_t width, int transpose) {
    if (transpose) {  /* dst (n x width) = src (rows x n)^T, zeros in columns rows.. */
        Py_ssize_t j0 = 0, d0 = 0;
#ifdef FA_TRANSPOSE_BLOCK  /* whole blocks of FA_TB x FA_TB in vector registers */
        for (; j0 + FA_TB <= rows; j0 += FA_TB)
            for (d0 = 0; d0 + FA_TB <= n; d0 += FA_TB)
                FA_TRANSPOSE_BLOCK(dst + d0 * ldd + j0, ldd, src + j0 * lds + d0, lds);
#endif
        for (Py_ssize_t d = 0; d < n; d++) {
            for (Py_ssize_t j = d < d0 ? j0 : 0; j < rows; j++) dst[d * ldd + j] = src[j * lds + d];
            for (Py_ssize_t j = rows; j < width; j++) dst[d * ldd + j] = 0;
        }
        return;
    }
    for (Py_ssize_t j = 0; j < rows; j++) {
        for (Py_ssize_t c = 0; c < n; c++) dst[j * ldd + c] = src[j * lds + c];
        for (Py_ssize_t c = n; c < width; c++) dst[j * ldd + c] = 0;
    }
}

/* The softmax of a tile's MR rows of scores (row r at s + r * Tp, token i0 + r, keys
   0..i0 + r; scale > 0). The weights go to att's rows (zeros after the diagonal, up to T) for
   the nr real rows; s keeps them unnormalised, with zeros after the diagonal, and inv[r] is
   what row r must be multiplied by (the weighted sum of v is scaled once, at its end). s's
   columns from round_up(jend, NV * LANES) on must be zero (never written) on entry. */
static inline void FA_NAME(softmax_tile)(FA_REAL* s, Py_ssize_t Tp, FA_REAL* att,
                                         Py_ssize_t att_sn, int nr, Py_ssize_t i0,
                                         Py_ssize_t jend, Py_ssize_t T, FA_REAL scale,
                                         FA_REAL inv[FA_NAME(MR)]) {
    enum { MR = FA_NAME(MR), LANES = FA_NAME(LANES), W = FA_NAME(NV) * LANES };
    Py_ssize_t j, jw = (jend + W - 1) / W * W;  /* the tile's columns end at jw */
#ifdef FA_VEXP  /* exp on whole vectors; lanes past the diagonal are masked out */
    typedef FA_INT FA_NAME(ivec) __attribute__((vector_size(FASTOPS_VEC_BYTES)));
    FA_NAME(vec) x, mx, sum, sums[MR];
    FA_NAME(ivec) lane, in;
    for (int l = 0; l < LANES; l++) lane[l] = l;
    FA_REAL m[MR];
    for (int r = 0; r < MR; r++) {  /* the rows' maxima first: independent chains */
        const FA_REAL* row = s + r * Tp;
        Py_ssize_t L = i0 + (r < nr ? r : 0) + 1;  /* rows past nr repeat row 0, as tile's */
        mx = (FA_NAME(vec)){0} + row[0];
        for (j = 0; j < L; j += LANES) {
            __builtin_memcpy(&x, row + j, sizeof(x));
            in = (x > mx) & (lane < (FA_NAME(ivec)){0} + (FA_INT)(L - j));
            mx = (FA_NAME(vec))((in & (FA_NAME(ivec))x) | (~in & (FA_NAME(ivec))mx));
        }
        m[r] = mx[0];
        for (int l = 1; l < LANES; l++) m[r] = mx[l] > m[r] ? mx[l] : m[r];
    }
    for (int r = 0; r < MR; r++) {
        FA_REAL* row = s + r * Tp;
        Py_ssize_t L = i0 + (r < nr ? r : 0) + 1, full = L / LANES * LANES;
        sum = (FA_NAME(vec)){0};
        for (j = 0; j < full; j += LANES) {
            __builtin_memcpy(&x, row + j, sizeof(x));
            x = FA_VEXP((x - m[r]) * scale);
            sum += x;
            __builtin_memcpy(row + j, &x, sizeof(x));
        }
        if (full < L) {  /* the diagonal's vector, lanes past it zero */
            __builtin_memcpy(&x, row + j, sizeof(x));
            in = lane < (FA_NAME(ivec)){0} + (FA_INT)(L - j);
            x = (FA_NAME(vec))(in & (FA_NAME(ivec))FA_VEXP((x - m[r]) * scale));
            sum += x;
            __builtin_memcpy(row + j, &x, sizeof(x));
            j += LANES;
        }
        for (; j < jw; j += LANES) {
            x = (FA_NAME(vec)){0};
            __builtin_memcpy(row + j, &x, sizeof(x));
        }
        sums[r] = sum;
    }
    for (int r = 0; r < MR; r++) {  /* after the rows: their sums need not wait for each other */
        FA_REAL total = 0;
        for (int l = 0; l < LANES; l++) total += sums[r][l];
        inv[r] = 1 / total;
    }
    for (int r = 0; r < nr; r++) {  /* att = row * inv: zeros past the diagonal come along */
        const FA_REAL* row = s + r * Tp;
        FA_REAL* a = att + (i0 + r) * att_sn;
        FA_NAME(vec) iv = (FA_NAME(vec)){0} + inv[r];
        for (j = 0; j + LANES <= T; j += LANES) {
            __builtin_memcpy(&x, row + j, sizeof(x));
            x *= iv;
            __builtin_memcpy(a + j, &x, sizeof(x));
        }
        for (; j < T; j++) a[j] = row[j] * inv[r];
    }
#else
    for (int r = 0; r < nr; r++) {
        FA_REAL* row = s + r * Tp;
        FA_REAL* a = att + (i0 + r) * att_sn;
        FA_REAL m = row[0], total = 0;
        Py_ssize_t L = i0 + r + 1;
        for (j = 1; j < L; j++) m = row[j] > m ? row[j] : m;
        for (j = 0; j < L; j++) {
            row[j] = exp((row[j] - m) * scale);
            total += row[j];
        }
        for (; j < jw; j++) row[j] = 0;
        inv[r] = 1 / total;
        for (j = 0; j < L; j++) a[j] = row[j] * inv[r];
        for (; j < T; j++) a[j] = 0;
    }
    for (int r = nr; r < MR; r++) inv[r] = 0;
#endif
}

static inline Py_ssize_t FA_NAME(round_up)(Py_ssize_t n, Py_ssize_t m) {
    return (n + m - 1) / m * m;
}

/* One head over T tokens: att (T x T, row stride att_sn) = causal softmax of scale * q k^T,
   zeros above the diagonal; out (T x hd) = att @ v. q, k, v and out are the head's columns
   of (T, C) matrices (row stride C). Returns -1 if the scratch could not be allocated. */
static int FA_NAME(attention_forward_head)(FA_REAL* out, FA_REAL* att, const FA_REAL* q,
                                           const FA_REAL* k, const FA_REAL* v, Py_ssize_t T,
                                           Py_ssize_t C, Py_ssize_t hd, Py_ssize_t att_sn,
                                           FA_REAL scale) {
    enum { MR = FA_NAME(MR), NV = FA_NAME(NV), LANES = FA_NAME(LANES), W = NV * LANES };
    Py_ssize_t Tp = FA_NAME(round_up)(T, W), hdp = FA_NAME(round_up)(hd, W);
    int copy = hd % W != 0;      /* v is read in place when its rows are whole tiles */
    FA_REAL* kt = malloc(sizeof(FA_REAL) * (hd * Tp + copy * T * hdp + MR * Tp));
    if (!kt) return -1;
    FA_REAL* s = kt + hd * Tp;   /* (MR, Tp): one tile of rows of scores, then weights */
    const FA_REAL* vp = v;       /* (T, hd), row stride ldv */
    Py_ssize_t ldv = C;
    FA_NAME(vec) acc[MR][NV];
    FA_REAL inv[MR];
    const FA_REAL* arow[MR];
    FA_NAME(pack)(kt, Tp, k, C, T, hd, Tp, 1);
    for (Py_ssize_t j = 0; j < MR * Tp; j++) s[j] = 0;  /* see softmax_tile */
    if (copy) {
        FA_NAME(pack)(s + MR * Tp, hdp, v, C, T, hd, hdp, 0);
        vp = s + MR * Tp;
        ldv = hdp;
    }
    for (Py_ssize_t i0 = 0; i0 < T; i0 += MR) {
        int nr = T - i0 < MR ? (int)(T - i0) : MR;
        Py_ssize_t jend = i0 + nr;  /* keys 0..jend-1 reach this tile's rows */
        FA_NAME(rows)(arow, q, C, i0, nr);
        for (Py_ssize_t j0 = 0; j0 < jend; j0 += W) {  /* scores, q . k over the head */
            if (jend - j0 <= LANES)
                FA_NAME(tile_nv)(acc, arow, 1, kt + j0, Tp, 0, hd, 1);
            else
                FA_NAME(tile)(acc, arow, 1, kt + j0, Tp, 0, hd);
            FA_NAME(tile_out)(acc, MR, s, Tp, j0, Tp, 0);  /* all MR rows: see softmax_tile */
        }
        FA_NAME(softmax_tile)(s, Tp, att, att_sn, nr, i0, jend, T, scale, inv);
        FA_NAME(rows)(arow, s, Tp, 0, nr);
        for (Py_ssize_t c0 = 0; c0 < hd; c0 += W) {  /* out = weights @ v */
            FA_NAME(tile)(acc, arow, 1, vp + c0, ldv, 0, jend);
            for (int r = 0; r < MR; r++)
                for (int c = 0; c < NV; c++) acc[r][c] *= inv[r];
            FA_NAME(tile_out)(acc, nr, out + i0 * C, C, c0, hd, 0);
        }
    }
    free(kt);
    return 0;
}

/* Backward of attention_forward_head: dq, dk, dv (T x hd, row stride C) += the gradients
   through it, given dout and the weights att it left (only the causal triangle is read).
   Returns -1 if the scratch could not be allocated. */
static int FA_NAME(attention_backward_head)(FA_REAL* dq, FA_REAL* dk, FA_REAL* dv,
                                            const FA_REAL* dout, const FA_REAL* q,
                                            const FA_REAL* k, const FA_REAL* v,
                                            const FA_REAL* att, Py_ssize_t T, Py_ssize_t C,
                                            Py_ssize_t hd, Py_ssize_t att_sn, FA_REAL scale) {
    enum { MR = FA_NAME(MR), NV = FA_NAME(NV), LANES = FA_NAME(LANES), W = NV * LANES };
    Py_ssize_t Tp = FA_NAME(round_up)(T, W), hdp = FA_NAME(round_up)(hd, W);
    int copy = hd % W != 0;      /* k, q, dout are read in place when rows are whole tiles */
    FA_REAL* vt = malloc(sizeof(FA_REAL) * (hd * Tp + 2 * T * Tp + copy * 3 * T * hdp));
    if (!vt) return -1;
    FA_REAL* p = vt + hd * Tp;   /* (T, Tp): the weights, then zeros for MR - 1 columns */
    FA_REAL* ds = p + T * Tp;    /* (T, Tp): gradient of the scores, the same zeros */
    const FA_REAL *kp = k, *qp = q, *dop = dout;  /* (T, hd), row stride ld */
    Py_ssize_t ld = C;
    FA_NAME(vec) acc[MR][NV];
    const FA_REAL* arow[MR];
    FA_NAME(pack)(vt, Tp, v, C, T, hd, Tp, 1);
    if (copy) {
        FA_REAL* buf = ds + T * Tp;
        FA_NAME(pack)(buf, hdp, k, C, T, hd, hdp, 0);
        FA_NAME(pack)(buf + T * hdp, hdp, q, C, T, hd, hdp, 0);
        FA_NAME(pack)(buf + 2 * T * hdp, hdp, dout, C, T, hd, hdp, 0);
        kp = buf;
        qp = buf + T * hdp;
        dop = buf + 2 * T * hdp;
        ld = hdp;
    }
    for (Py_ssize_t i = 0; i < T; i++) {  /* zeros only where a key tile reads: j < i + MR */
        Py_ssize_t j, zend = i + MR < Tp ? i + MR : Tp;
        for (j = 0; j <= i; j++) p[i * Tp + j] = att[i * att_sn + j];
        for (; j < zend; j++) p[i * Tp + j] = 0;
    }
    for (Py_ssize_t i0 = 0; i0 < T; i0 += MR) {  /* row tiles: ds, then dq += ds @ k */
        int nr = T - i0 < MR ? (int)(T - i0) : MR;
        Py_ssize_t jend = i0 + nr;
        FA_NAME(rows)(arow, dout, C, i0, nr);
        for (Py_ssize_t j0 = 0; j0 < jend; j0 += W) {  /* d(weights) = dout . v */
            if (jend - j0 <= LANES)
                FA_NAME(tile_nv)(acc, arow, 1, vt + j0, Tp, 0, hd, 1);
            else
                FA_NAME(tile)(acc, arow, 1, vt + j0, Tp, 0, hd);
            FA_NAME(tile_out)(acc, nr, ds + i0 * Tp, Tp, j0, Tp, 0);
        }
        for (int r = 0; r < nr; r++) {  /* softmax backward, scaled */
            Py_ssize_t i = i0 + r, j;
            FA_REAL* g = ds + i * Tp;
            const FA_REAL* a = p + i * Tp;
            FA_REAL dot = FA_DOT(a, g, i + 1);
            for (j = 0; j <= i; j++) g[j] = a[j] * (g[j] - dot) * scale;
            for (; j < i + MR && j < Tp; j++) g[j] = 0;  /* all that dq's and dk's tiles read */
        }
        FA_NAME(rows)(arow, ds, Tp, i0, nr);
        for (Py_ssize_t c0 = 0; c0 < hd; c0 += W) {
            FA_NAME(tile)(acc, arow, 1, kp + c0, ld, 0, jend);
            FA_NAME(tile_out)(acc, nr, dq + i0 * C, C, c0, hd, 1);
        }
    }
    for (Py_ssize_t j0 = 0; j0 < T; j0 += MR) {  /* key tiles: dk += ds^T q, dv += att^T dout */
        int nr = T - j0 < MR ? (int)(T - j0) : MR;
        for (int r = 0; r < MR; r++) arow[r] = ds + j0 + (r < nr ? r : 0);
        for (Py_ssize_t c0 = 0; c0 < hd; c0 += W) {
            FA_NAME(tile)(acc, arow, Tp, qp + c0, ld, j0, T);
            FA_NAME(tile_out)(acc, nr, dk + j0 * C, C, c0, hd, 1);
        }
        for (int r = 0; r < MR; r++) arow[r] = p + j0 + (r < nr ? r : 0);
        for (Py_ssize_t c0 = 0; c0 < hd; c0 += W) {
            FA_NAME(tile)(acc, arow, Tp, dop + c0, ld, j0, T);
            FA_NAME(tile_out)(acc, nr, dv + j0 * C, C, c0, hd, 1);
        }
    }
    free(vt);
    return 0;
}
