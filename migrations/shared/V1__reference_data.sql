-- SHARED database: the ERP's reference data, read by every société.
-- Every tenant role reads it (through tenantd's shared reader role); only the
-- admin role writes it. Tenant databases refer to these rows by their natural
-- code (material code, currency code, country code...), never by foreign key:
-- PostgreSQL cannot enforce a foreign key across databases.

-- Units of measure ----------------------------------------------------------

CREATE TABLE units (
    code        text PRIMARY KEY CHECK (code ~ '^[a-z0-9_]{1,16}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100)
);

-- ISO 4217 currencies -------------------------------------------------------

CREATE TABLE currencies (
    code        char(3) PRIMARY KEY CHECK (code ~ '^[A-Z]{3}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    decimals    smallint NOT NULL DEFAULT 2 CHECK (decimals BETWEEN 0 AND 4)
);

-- ISO 3166-1 alpha-2 countries ----------------------------------------------

CREATE TABLE countries (
    code        char(2) PRIMARY KEY CHECK (code ~ '^[A-Z]{2}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100)
);

-- Quality and product standards ---------------------------------------------

CREATE TABLE quality_standards (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE CHECK (length(code) BETWEEN 1 AND 50),
    title       text NOT NULL,
    issuer      text NOT NULL,
    year        smallint CHECK (year BETWEEN 1900 AND 2100)
);

-- Materials -----------------------------------------------------------------

CREATE TABLE materials (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code            text NOT NULL UNIQUE CHECK (code ~ '^[A-Z0-9][A-Z0-9_.-]{0,39}$'),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    grade           text NOT NULL,
    density_kg_m3   numeric(8,2) NOT NULL CHECK (density_kg_m3 > 0),
    unit            text NOT NULL REFERENCES units (code),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX materials_unit ON materials (unit);

CREATE TABLE material_standards (
    material_id     bigint NOT NULL REFERENCES materials (id) ON DELETE CASCADE,
    standard_id     bigint NOT NULL REFERENCES quality_standards (id) ON DELETE CASCADE,
    PRIMARY KEY (material_id, standard_id)
);
CREATE INDEX material_standards_standard ON material_standards (standard_id);

-- Workshop processes --------------------------------------------------------

CREATE TABLE processes (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code                    text NOT NULL UNIQUE CHECK (code ~ '^[A-Z0-9][A-Z0-9_-]{0,39}$'),
    name                    text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description             text,
    default_duration_min    integer NOT NULL DEFAULT 0 CHECK (default_duration_min >= 0)
);

-- Seed data -----------------------------------------------------------------

INSERT INTO units (code, name) VALUES
    ('kg',  'kilogram'),
    ('t',   'tonne'),
    ('m',   'metre'),
    ('m2',  'square metre'),
    ('m3',  'cubic metre'),
    ('l',   'litre'),
    ('pc',  'piece'),
    ('h',   'hour');

INSERT INTO currencies (code, name, decimals) VALUES
    ('DZD', 'Algerian dinar',   2),
    ('CHF', 'Swiss franc',      2),
    ('EUR', 'Euro',             2),
    ('CAD', 'Canadian dollar',  2),
    ('USD', 'US dollar',        2);

INSERT INTO countries (code, name) VALUES
    ('DZ', 'Algeria'),
    ('CH', 'Switzerland'),
    ('FR', 'France'),
    ('BE', 'Belgium'),
    ('CA', 'Canada'),
    ('LU', 'Luxembourg'),
    ('DE', 'Germany');

INSERT INTO quality_standards (code, title, issuer, year) VALUES
    ('EN 1090-2',    'Execution of steel structures and aluminium structures - Part 2: Technical requirements for steel structures', 'CEN', 2018),
    ('EN 1090-3',    'Execution of steel structures and aluminium structures - Part 3: Technical requirements for aluminium structures', 'CEN', 2019),
    ('ISO 9001',     'Quality management systems - Requirements', 'ISO', 2015),
    ('ISO 3834-2',   'Quality requirements for fusion welding of metallic materials - Part 2: Comprehensive quality requirements', 'ISO', 2021),
    ('EN 10025-2',   'Hot rolled products of structural steels - Part 2: Technical delivery conditions for non-alloy structural steels', 'CEN', 2019),
    ('EN 10088-2',   'Stainless steels - Part 2: Technical delivery conditions for sheet/plate and strip of corrosion resisting steels', 'CEN', 2014),
    ('EN 755-2',     'Aluminium and aluminium alloys - Extruded rod/bar, tube and profiles - Part 2: Mechanical properties', 'CEN', 2016),
    ('EN ISO 12944', 'Paints and varnishes - Corrosion protection of steel structures by protective paint systems', 'ISO', 2018),
    ('EN ISO 1461',  'Hot dip galvanized coatings on fabricated iron and steel articles - Specifications and test methods', 'ISO', 2022),
    ('CSA G40.21',   'Structural quality steel', 'CSA', 2013);

INSERT INTO materials (code, name, grade, density_kg_m3, unit) VALUES
    ('S235JR',  'Non-alloy structural steel S235JR',          'S235JR (1.0038)',        7850, 'kg'),
    ('S275JR',  'Non-alloy structural steel S275JR',          'S275JR (1.0044)',        7850, 'kg'),
    ('S355J2',  'Non-alloy structural steel S355J2',          'S355J2 (1.0577)',        7850, 'kg'),
    ('350W',    'Structural quality steel 350W (Canada)',     'CSA G40.21 350W',        7850, 'kg'),
    ('AL6060',  'Aluminium alloy 6060 extrusion',             'EN AW-6060 T66',         2700, 'kg'),
    ('SS304L',  'Austenitic stainless steel 304L',            'X2CrNi18-9 (1.4307)',    7900, 'kg'),
    ('SS316L',  'Austenitic stainless steel 316L',            'X2CrNiMo17-12-2 (1.4404)', 8000, 'kg');

INSERT INTO material_standards (material_id, standard_id)
SELECT m.id, s.id
FROM (VALUES
        ('S235JR', 'EN 10025-2'), ('S235JR', 'EN 1090-2'),
        ('S275JR', 'EN 10025-2'), ('S275JR', 'EN 1090-2'),
        ('S355J2', 'EN 10025-2'), ('S355J2', 'EN 1090-2'),
        ('350W',   'CSA G40.21'),
        ('AL6060', 'EN 755-2'),   ('AL6060', 'EN 1090-3'),
        ('SS304L', 'EN 10088-2'), ('SS304L', 'EN 1090-2'),
        ('SS316L', 'EN 10088-2'), ('SS316L', 'EN 1090-2')
     ) AS link (material_code, standard_code)
JOIN materials m ON m.code = link.material_code
JOIN quality_standards s ON s.code = link.standard_code;

INSERT INTO processes (code, name, description, default_duration_min) VALUES
    ('CUT-SAW',    'Saw cutting',          'Band-saw cutting of beams and tubes to length',                    15),
    ('CUT-PLASMA', 'Plasma cutting',       'CNC plasma cutting of plates and gussets',                         20),
    ('CUT-LASER',  'Laser cutting',        'CNC fibre-laser cutting of sheet and thin plate',                  10),
    ('DRILL',      'Drilling',             'CNC drilling and punching of bolt holes',                          10),
    ('WELD-MAG',   'MAG welding (135)',    'Metal active gas welding, ISO 4063 process 135',                   45),
    ('WELD-TIG',   'TIG welding (141)',    'Tungsten inert gas welding, ISO 4063 process 141 (stainless, alu)', 60),
    ('BLAST',      'Shot blasting',        'Surface preparation to Sa 2 1/2 (ISO 8501-1)',                     30),
    ('PAINT',      'Painting',             'Protective paint system per EN ISO 12944',                         90),
    ('GALV',       'Hot-dip galvanizing',  'Subcontracted hot-dip galvanizing per EN ISO 1461',                 0),
    ('ASSEMBLY',   'Assembly',             'Pre-assembly and fit-up in the workshop',                          60);
