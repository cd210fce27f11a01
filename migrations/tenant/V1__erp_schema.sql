-- Tenant database: one société's business schema (sales, purchasing, stock,
-- invoicing, projects). Every tenant database gets this set.
--
-- This runs as the tenant's own role (a non-superuser that owns the database),
-- so it only creates plain objects in the public schema: no roles, grants,
-- extensions or other schemas.
--
-- Reference data lives in the SHARED database (materials, units, currencies,
-- countries...). Columns that point at it hold the natural code and are NOT
-- foreign keys: PostgreSQL cannot enforce a reference across databases, so the
-- application validates those codes against SHARED.

-- Third parties -------------------------------------------------------------

CREATE TABLE clients (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code                text NOT NULL UNIQUE CHECK (length(code) BETWEEN 1 AND 40),
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    vat_number          text,
    email               text,
    phone               text,
    address_line1       text,
    address_line2       text,
    postal_code         text,
    city                text,
    country_code        char(2) CHECK (country_code ~ '^[A-Z]{2}$'),   -- SHARED countries.code
    currency            char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'), -- SHARED currencies.code
    payment_terms_days  integer NOT NULL DEFAULT 30 CHECK (payment_terms_days BETWEEN 0 AND 365),
    credit_limit        numeric(14,2) CHECK (credit_limit >= 0),
    is_active           boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX clients_name ON clients (lower(name));
CREATE INDEX clients_country ON clients (country_code);

CREATE TABLE client_contacts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id   bigint NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    first_name  text,
    last_name   text NOT NULL CHECK (length(last_name) BETWEEN 1 AND 100),
    job_title   text,
    email       text,
    phone       text,
    is_primary  boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX client_contacts_client ON client_contacts (client_id);
-- At most one primary contact per client.
CREATE UNIQUE INDEX client_contacts_one_primary ON client_contacts (client_id) WHERE is_primary;
CREATE INDEX client_contacts_email ON client_contacts (lower(email));

CREATE TABLE suppliers (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code                text NOT NULL UNIQUE CHECK (length(code) BETWEEN 1 AND 40),
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    vat_number          text,
    email               text,
    phone               text,
    address_line1       text,
    address_line2       text,
    postal_code         text,
    city                text,
    country_code        char(2) CHECK (country_code ~ '^[A-Z]{2}$'),   -- SHARED countries.code
    currency            char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'), -- SHARED currencies.code
    payment_terms_days  integer NOT NULL DEFAULT 30 CHECK (payment_terms_days BETWEEN 0 AND 365),
    is_active           boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX suppliers_name ON suppliers (lower(name));

-- Catalogue and stock -------------------------------------------------------

CREATE TABLE articles (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code            text NOT NULL UNIQUE CHECK (length(code) BETWEEN 1 AND 60),
    designation     text NOT NULL CHECK (length(designation) BETWEEN 1 AND 300),
    -- SHARED materials.code (e.g. 'S235JR'). Not a foreign key: it crosses
    -- databases; the application checks it against SHARED.
    material_code   text,
    -- SHARED units.code (e.g. 'kg', 'm', 'pc'). Not a foreign key either.
    unit_code       text NOT NULL DEFAULT 'pc',
    profile         text,                          -- e.g. 'HEA 200', 'IPE 300', 'PL 10'
    weight_kg_per_unit numeric(14,4) CHECK (weight_kg_per_unit >= 0),
    purchase_price  numeric(14,4) CHECK (purchase_price >= 0),
    sale_price      numeric(14,4) CHECK (sale_price >= 0),
    default_supplier_id bigint REFERENCES suppliers (id) ON DELETE SET NULL,
    is_stocked      boolean NOT NULL DEFAULT true,
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX articles_material ON articles (material_code);
CREATE INDEX articles_default_supplier ON articles (default_supplier_id);
CREATE INDEX articles_designation ON articles (lower(designation));

CREATE TABLE warehouses (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE CHECK (length(code) BETWEEN 1 AND 20),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    address     text,
    is_active   boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Current quantity of each article in each warehouse.
CREATE TABLE stock (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    article_id          bigint NOT NULL REFERENCES articles (id),
    warehouse_id        bigint NOT NULL REFERENCES warehouses (id),
    quantity            numeric(14,3) NOT NULL DEFAULT 0 CHECK (quantity >= 0),
    reserved_quantity   numeric(14,3) NOT NULL DEFAULT 0 CHECK (reserved_quantity >= 0),
    min_quantity        numeric(14,3) CHECK (min_quantity >= 0),
    location            text,                      -- rack / bay within the warehouse
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (article_id, warehouse_id)
);
-- (article_id, warehouse_id) is covered by the unique constraint's index.
CREATE INDEX stock_warehouse ON stock (warehouse_id);

-- Projects (chantiers) ------------------------------------------------------

CREATE TABLE projects (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code            text NOT NULL UNIQUE CHECK (length(code) BETWEEN 1 AND 40),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    client_id       bigint NOT NULL REFERENCES clients (id),
    site_address    text,
    site_city       text,
    site_country_code char(2) CHECK (site_country_code ~ '^[A-Z]{2}$'),  -- SHARED countries.code
    -- EN 1090-2 execution class required on this site.
    execution_class text CHECK (execution_class IN ('EXC1', 'EXC2', 'EXC3', 'EXC4')),
    status          text NOT NULL DEFAULT 'planned'
                        CHECK (status IN ('planned', 'in_progress', 'on_hold', 'completed', 'cancelled')),
    start_date      date,
    end_date        date,
    budget          numeric(14,2) CHECK (budget >= 0),
    currency        char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (end_date IS NULL OR start_date IS NULL OR end_date >= start_date)
);
CREATE INDEX projects_client ON projects (client_id);
CREATE INDEX projects_status ON projects (status);

-- Sales: quotes, orders -----------------------------------------------------

CREATE TABLE quotes (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number          text NOT NULL UNIQUE,
    client_id       bigint NOT NULL REFERENCES clients (id),
    project_id      bigint REFERENCES projects (id),
    status          text NOT NULL DEFAULT 'draft'
                        CHECK (status IN ('draft', 'sent', 'accepted', 'rejected', 'expired', 'cancelled')),
    currency        char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    issued_on       date,
    valid_until     date,
    total_net       numeric(14,2) NOT NULL DEFAULT 0 CHECK (total_net >= 0),
    notes           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (valid_until IS NULL OR issued_on IS NULL OR valid_until >= issued_on)
);
CREATE INDEX quotes_client ON quotes (client_id, issued_on);
CREATE INDEX quotes_project ON quotes (project_id);
CREATE INDEX quotes_status ON quotes (status, valid_until);

CREATE TABLE quote_lines (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    quote_id        bigint NOT NULL REFERENCES quotes (id) ON DELETE CASCADE,
    line_no         integer NOT NULL CHECK (line_no > 0),
    article_id      bigint REFERENCES articles (id),
    description     text NOT NULL,
    quantity        numeric(14,3) NOT NULL CHECK (quantity > 0),
    unit_price      numeric(14,4) NOT NULL CHECK (unit_price >= 0),
    discount_pct    numeric(5,2) NOT NULL DEFAULT 0 CHECK (discount_pct BETWEEN 0 AND 100),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (quote_id, line_no)
);
CREATE INDEX quote_lines_article ON quote_lines (article_id);

CREATE TABLE orders (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number              text NOT NULL UNIQUE,
    client_id           bigint NOT NULL REFERENCES clients (id),
    quote_id            bigint REFERENCES quotes (id),
    project_id          bigint REFERENCES projects (id),
    status              text NOT NULL DEFAULT 'draft'
                            CHECK (status IN ('draft', 'confirmed', 'in_production',
                                              'shipped', 'delivered', 'invoiced', 'cancelled')),
    currency            char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    client_reference    text,
    ordered_at          timestamptz NOT NULL DEFAULT now(),
    requested_delivery  date,
    delivered_at        timestamptz,
    total_net           numeric(14,2) NOT NULL DEFAULT 0 CHECK (total_net >= 0),
    notes               text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_client ON orders (client_id, ordered_at);
CREATE INDEX orders_quote ON orders (quote_id);
CREATE INDEX orders_project ON orders (project_id);
CREATE INDEX orders_status ON orders (status, requested_delivery);

CREATE TABLE order_lines (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id        bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no         integer NOT NULL CHECK (line_no > 0),
    article_id      bigint NOT NULL REFERENCES articles (id),
    description     text,
    quantity        numeric(14,3) NOT NULL CHECK (quantity > 0),
    unit_price      numeric(14,4) NOT NULL CHECK (unit_price >= 0),
    discount_pct    numeric(5,2) NOT NULL DEFAULT 0 CHECK (discount_pct BETWEEN 0 AND 100),
    delivered_quantity numeric(14,3) NOT NULL DEFAULT 0 CHECK (delivered_quantity >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (order_id, line_no)
);
CREATE INDEX order_lines_article ON order_lines (article_id);

-- Purchasing ----------------------------------------------------------------

CREATE TABLE purchase_orders (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number          text NOT NULL UNIQUE,
    supplier_id     bigint NOT NULL REFERENCES suppliers (id),
    warehouse_id    bigint REFERENCES warehouses (id),      -- delivery warehouse
    project_id      bigint REFERENCES projects (id),
    status          text NOT NULL DEFAULT 'draft'
                        CHECK (status IN ('draft', 'sent', 'confirmed', 'partially_received',
                                          'received', 'cancelled')),
    currency        char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    ordered_at      timestamptz NOT NULL DEFAULT now(),
    expected_on     date,
    total_net       numeric(14,2) NOT NULL DEFAULT 0 CHECK (total_net >= 0),
    notes           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX purchase_orders_supplier ON purchase_orders (supplier_id, ordered_at);
CREATE INDEX purchase_orders_warehouse ON purchase_orders (warehouse_id);
CREATE INDEX purchase_orders_project ON purchase_orders (project_id);
CREATE INDEX purchase_orders_status ON purchase_orders (status, expected_on);

CREATE TABLE purchase_order_lines (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    purchase_order_id   bigint NOT NULL REFERENCES purchase_orders (id) ON DELETE CASCADE,
    line_no             integer NOT NULL CHECK (line_no > 0),
    article_id          bigint NOT NULL REFERENCES articles (id),
    description         text,
    quantity            numeric(14,3) NOT NULL CHECK (quantity > 0),
    unit_price          numeric(14,4) NOT NULL CHECK (unit_price >= 0),
    received_quantity   numeric(14,3) NOT NULL DEFAULT 0 CHECK (received_quantity >= 0),
    -- Heat number / inspection certificate (EN 10204 3.1) for traceability.
    heat_number         text,
    certificate_ref     text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (purchase_order_id, line_no)
);
CREATE INDEX purchase_order_lines_article ON purchase_order_lines (article_id);

-- Stock movements -----------------------------------------------------------

-- Journal of every stock change. 'in' and 'out' carry a positive quantity (the
-- type gives the direction); 'adjust' carries a signed, non-zero correction.
CREATE TABLE stock_movements (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    article_id      bigint NOT NULL REFERENCES articles (id),
    warehouse_id    bigint NOT NULL REFERENCES warehouses (id),
    type            text NOT NULL CHECK (type IN ('in', 'out', 'adjust')),
    quantity        numeric(14,3) NOT NULL,
    reference       text,                          -- e.g. order / purchase order number
    order_line_id   bigint REFERENCES order_lines (id) ON DELETE SET NULL,
    purchase_order_line_id bigint REFERENCES purchase_order_lines (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((type IN ('in', 'out') AND quantity > 0) OR (type = 'adjust' AND quantity <> 0))
);
CREATE INDEX stock_movements_article ON stock_movements (article_id, created_at);
CREATE INDEX stock_movements_warehouse ON stock_movements (warehouse_id, created_at);
CREATE INDEX stock_movements_order_line ON stock_movements (order_line_id);
CREATE INDEX stock_movements_po_line ON stock_movements (purchase_order_line_id);
CREATE INDEX stock_movements_reference ON stock_movements (reference);

-- Invoicing -----------------------------------------------------------------

CREATE TABLE invoices (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number          text NOT NULL UNIQUE,
    client_id       bigint NOT NULL REFERENCES clients (id),
    order_id        bigint REFERENCES orders (id),
    kind            text NOT NULL DEFAULT 'invoice' CHECK (kind IN ('invoice', 'credit_note', 'deposit')),
    status          text NOT NULL DEFAULT 'draft'
                        CHECK (status IN ('draft', 'issued', 'partially_paid', 'paid', 'cancelled')),
    currency        char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    issued_on       date,
    due_date        date,
    total_net       numeric(14,2) NOT NULL DEFAULT 0,
    total_tax       numeric(14,2) NOT NULL DEFAULT 0,
    total_gross     numeric(14,2) NOT NULL DEFAULT 0,
    amount_paid     numeric(14,2) NOT NULL DEFAULT 0 CHECK (amount_paid >= 0),
    notes           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (total_gross = total_net + total_tax),
    CHECK (due_date IS NULL OR issued_on IS NULL OR due_date >= issued_on),
    CHECK (status = 'draft' OR issued_on IS NOT NULL)
);
CREATE INDEX invoices_client ON invoices (client_id, issued_on);
CREATE INDEX invoices_order ON invoices (order_id);
CREATE INDEX invoices_status_due ON invoices (status, due_date);

CREATE TABLE invoice_lines (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invoice_id      bigint NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    line_no         integer NOT NULL CHECK (line_no > 0),
    order_line_id   bigint REFERENCES order_lines (id) ON DELETE SET NULL,
    article_id      bigint REFERENCES articles (id),
    description     text NOT NULL,
    quantity        numeric(14,3) NOT NULL CHECK (quantity <> 0),
    unit_price      numeric(14,4) NOT NULL CHECK (unit_price >= 0),
    discount_pct    numeric(5,2) NOT NULL DEFAULT 0 CHECK (discount_pct BETWEEN 0 AND 100),
    tax_rate_pct    numeric(5,2) NOT NULL DEFAULT 0 CHECK (tax_rate_pct BETWEEN 0 AND 100),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (invoice_id, line_no)
);
CREATE INDEX invoice_lines_order_line ON invoice_lines (order_line_id);
CREATE INDEX invoice_lines_article ON invoice_lines (article_id);

CREATE TABLE payments (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invoice_id      bigint NOT NULL REFERENCES invoices (id),
    amount          numeric(14,2) NOT NULL CHECK (amount > 0),
    currency        char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    paid_on         date NOT NULL,
    method          text NOT NULL
                        CHECK (method IN ('bank_transfer', 'cheque', 'cash', 'card', 'direct_debit', 'other')),
    reference       text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_invoice ON payments (invoice_id);
CREATE INDEX payments_paid_on ON payments (paid_on);
